# shellcheck shell=bash
# ssd-large (closed, `--config ssd_large`) on one node with 8 H100 80 GB. System settings only; the
# hyperparameters are the preset's. Every value can be set in the environment instead.
#
#   global batch = 8 ranks x 16 = 128 images per step
#   LR           = base_lr 2.5e-3 x 128 / 32 = 0.01 after 650 warmup steps (from 1e-3 x that)
#   steps/epoch  = floor(117266 / 128) = 916, so warmup is 0.71 epochs; LR x0.1 after epochs 40, 50
# Per-rank batch 16 in bfloat16: see config_1xH100.sh (an estimate, not a measurement).
CONFIG=${CONFIG:-ssd_large}
NNODES=${NNODES:-1}
NRANKS_PER_NODE=${NRANKS_PER_NODE:-8}
BATCH_SIZE=${BATCH_SIZE:-16}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-32}
PRECISION=${PRECISION:-bfloat16}
LAUNCHER=${LAUNCHER:-horovodrun}          # NCCL allreduce between the GPUs
LAUNCHER_FLAGS=${LAUNCHER_FLAGS:-}
HOSTS=${HOSTS:-localhost:8}
SETUP_FLAGS=${SETUP_FLAGS:---gpu}
COCO_DIR=${COCO_DIR:-data/coco}
DATA_DIR=${DATA_DIR:-}                    # default COCO_DIR/tfrecords (prepared when missing)
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-}    # default COCO_DIR/weights/resnet34 (imported when missing)
LOG_DIR=${LOG_DIR:-runs}
SUBMISSION_ORG=${SUBMISSION_ORG:-reference}
SUBMISSION_PLATFORM=${SUBMISSION_PLATFORM:-8xH100}
