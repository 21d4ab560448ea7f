# shellcheck shell=bash
# ssd-large (closed, `--config ssd_large`) on 2 nodes with 8 H100 80 GB each, launched with
# mpirun (or LAUNCHER=horovodrun) from the first node. The repository, its .venv and the data must
# be at the same paths on both nodes, and passwordless ssh must reach both. System settings only;
# every value can be set in the environment instead; the nodes must be given:
# HOSTS=node1:8,node2:8 (or HOSTFILE=<file of "node1 slots=8" lines>) IFACE=eth0 ./run_and_time.sh
#
#   global batch = 2 nodes x 8 ranks x 16 = 256 images per step
#   LR           = base_lr 2.5e-3 x 256 / 32 = 0.02 after 650 warmup steps (from 1e-3 x that)
#   steps/epoch  = floor(117266 / 256) = 458, so warmup is 1.42 epochs; LR x0.1 after epochs 40, 50
# Per-rank batch 16 in bfloat16: see config_1xH100.sh (an estimate, not a measurement).
CONFIG=${CONFIG:-ssd_large}
NNODES=${NNODES:-2}
NRANKS_PER_NODE=${NRANKS_PER_NODE:-8}
BATCH_SIZE=${BATCH_SIZE:-16}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-32}
PRECISION=${PRECISION:-bfloat16}
LAUNCHER=${LAUNCHER:-mpirun}
LAUNCHER_FLAGS=${LAUNCHER_FLAGS:-}        # extra launcher flags (horovodrun: --gloo for Gloo's controller)
HOSTS=${HOSTS:-}                          # node1:8,node2:8, or:
HOSTFILE=${HOSTFILE:-}                    # lines "node1 slots=8"
IFACE=${IFACE:-}                          # the nodes' interface (ip -br addr), e.g. eth0; empty: the launchers choose
SETUP_FLAGS=${SETUP_FLAGS:---gpu}
COCO_DIR=${COCO_DIR:-data/coco}
DATA_DIR=${DATA_DIR:-}                    # default COCO_DIR/tfrecords (prepared when missing)
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-}    # default COCO_DIR/weights/resnet34 (imported when missing)
LOG_DIR=${LOG_DIR:-runs}
SUBMISSION_ORG=${SUBMISSION_ORG:-reference}
SUBMISSION_PLATFORM=${SUBMISSION_PLATFORM:-2x8xH100}
