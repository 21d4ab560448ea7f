# shellcheck shell=bash
# The coco128 rehearsal: `--config coco128` (the 80 COCO classes at 300 px, every conv at 1/8
# width, from scratch, no augmentation, data.cache) trained on the 126 annotated images of coco128
# and evaluated on all 128 of them, 2 Horovod ranks on the CPU of one machine (open division).
# System settings only; the hyperparameters are the preset's (ssd/config.py). Every value can be
# set in the environment instead.
#
#   global batch = 2 ranks x 4 = 8 images per step
#   LR           = coco128 base_lr 0.1 x 8 / 32 = 0.025, after 100 warmup steps
#   steps/epoch  = floor(126 / 8) = 15 (the 126 annotated images; evaluation on all 128)
CONFIG=${CONFIG:-coco128}
NNODES=${NNODES:-1}
NRANKS_PER_NODE=${NRANKS_PER_NODE:-2}
BATCH_SIZE=${BATCH_SIZE:-4}               # images per rank per step
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-32}    # images per rank per evaluation batch
PRECISION=${PRECISION:-float32}
LAUNCHER=${LAUNCHER:-horovodrun}          # single | horovodrun | mpirun
LAUNCHER_FLAGS=${LAUNCHER_FLAGS:---gloo}
HOSTS=${HOSTS:-localhost:2}
SETUP_FLAGS=${SETUP_FLAGS:-}
# REHEARSAL_DIR holds train2017/ and annotations/. When it is not given, coco128 is fetched on first use
# into data/coco128 (ssd/data/download_coco.sh data/coco128 coco128, checksummed).
if [[ -z "${REHEARSAL_DIR:-}" ]]; then
  REHEARSAL_DIR=data/coco128
  # shellcheck disable=SC2034  # read by run_and_time.sh
  REHEARSAL_DOWNLOAD=coco128
fi
DATA_DIR=${DATA_DIR:-data/coco128/tfrecords}  # prepared from REHEARSAL_DIR when missing
LOG_DIR=${LOG_DIR:-runs}
SUBMISSION_ORG=${SUBMISSION_ORG:-reference}
SUBMISSION_PLATFORM=${SUBMISSION_PLATFORM:-cpu-2core}
