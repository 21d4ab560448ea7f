# shellcheck shell=bash
# ssd-large (closed, `--config ssd_large`) on one H100 80 GB. System settings only; the
# hyperparameters are the preset's. Every value can be set in the environment instead.
#
#   global batch = 1 rank x 16 = 16 images per step
#   LR           = base_lr 2.5e-3 x 16 / 32 = 1.25e-3 after 650 warmup steps (from 1e-3 x that)
#   steps/epoch  = floor(117266 / 16) = 7329, so warmup is 0.09 epochs; LR x0.1 after epochs 40, 50
# Per-rank batch 16 in bfloat16: the 1200x1200 activations are roughly 1 GB per image in bfloat16
# (about 450 M values, mostly conv4_x at 150x150x256), an estimate, not a measurement.
CONFIG=${CONFIG:-ssd_large}
NNODES=${NNODES:-1}
NRANKS_PER_NODE=${NRANKS_PER_NODE:-1}
BATCH_SIZE=${BATCH_SIZE:-16}
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-32}
PRECISION=${PRECISION:-bfloat16}
LAUNCHER=${LAUNCHER:-single}
LAUNCHER_FLAGS=${LAUNCHER_FLAGS:-}
HOSTS=${HOSTS:-localhost:1}
SETUP_FLAGS=${SETUP_FLAGS:---gpu}
COCO_DIR=${COCO_DIR:-data/coco}           # from ssd/data/download_coco.sh
DATA_DIR=${DATA_DIR:-}                    # default COCO_DIR/tfrecords (prepared when missing)
BACKBONE_WEIGHTS=${BACKBONE_WEIGHTS:-}    # default COCO_DIR/weights/resnet34 (imported when missing)
LOG_DIR=${LOG_DIR:-runs}
SUBMISSION_ORG=${SUBMISSION_ORG:-reference}
SUBMISSION_PLATFORM=${SUBMISSION_PLATFORM:-1xH100}
