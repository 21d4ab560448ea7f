# shellcheck shell=bash
# The demo (`--config demo`) on 2 nodes x 1 CPU rank, launched from the first node with mpirun
# (LAUNCHER=horovodrun: horovodrun with Gloo) over ssh: the multi-node rehearsal on one machine,
# whose two nodes are network namespaces (tests/multinode/rehearse.sh). The checkout, its .venv and
# DATA_DIR must be at the same paths on both nodes, and ssh from the first node must reach both
# without a password. System settings only; every value can be set in the environment instead.
#
#   global batch = 2 nodes x 1 rank x 16 = 32 images per step
#   LR           = demo base_lr 0.02 x 32 / 32 = 0.02, after 100 warmup steps
#   data         = 2000 train / 200 val generated images -> 62 steps per epoch
CONFIG=${CONFIG:-demo}
NNODES=${NNODES:-2}
NRANKS_PER_NODE=${NRANKS_PER_NODE:-1}
BATCH_SIZE=${BATCH_SIZE:-16}              # images per rank per step
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-16}
PRECISION=${PRECISION:-float32}
LAUNCHER=${LAUNCHER:-mpirun}              # mpirun | horovodrun
if [[ "$LAUNCHER" == horovodrun ]]; then LAUNCHER_FLAGS=${LAUNCHER_FLAGS:---gloo --disable-cache}; fi
LAUNCHER_FLAGS=${LAUNCHER_FLAGS:-}
HOSTFILE=${HOSTFILE:-}                    # lines "<host> slots=1", e.g. tests/multinode/hosts.sh's
HOSTS=${HOSTS:-}                          # or: node1:1,node2:1 (one of the two is required)
IFACE=${IFACE:-mnet0}                     # the nodes' interface: tests/multinode/hosts.sh's veth
# The rehearsal's two nodes share one machine's cores: one TensorFlow thread pool each, of 1.
export TF_NUM_INTRAOP_THREADS=${TF_NUM_INTRAOP_THREADS:-1} TF_NUM_INTEROP_THREADS=${TF_NUM_INTEROP_THREADS:-1}
SETUP_FLAGS=${SETUP_FLAGS:-}
COCO_DIR=${COCO_DIR:-}                    # empty: the synthetic dataset, generated into DEMO_DIR
DEMO_DIR=${DEMO_DIR:-data/demo}
DATA_DIR=${DATA_DIR:-}                    # TFRecords (train/, val/); default DEMO_DIR/tfrecords
LOG_DIR=${LOG_DIR:-runs}                  # on the first node only (rank 0 writes the run directory)
SUBMISSION_ORG=${SUBMISSION_ORG:-reference}
SUBMISSION_PLATFORM=${SUBMISSION_PLATFORM:-2x1xCPU}
