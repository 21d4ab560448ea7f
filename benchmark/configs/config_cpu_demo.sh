# shellcheck shell=bash
# The built-in default run: `--config demo` (300 px, width x0.125, 4 classes) on generated shapes,
# 2 Horovod ranks on the CPU of one machine; with COCO_DIR set, `--config ssd_large` on COCO instead.
# System settings only; the hyperparameters are the preset's (ssd/config.py). Every value can be
# set in the environment instead.
#
#   global batch = 2 ranks x 16 = 32 images per step
#   LR           = demo base_lr 0.02 x 32 / 32 = 0.02, after 100 warmup steps
#                  (from 0.1 x 0.02); x0.1 after epoch 10
#   data         = 2000 train / 200 val generated images -> 62 steps per epoch
if [[ -n "${COCO_DIR:-}" ]]; then CONFIG=${CONFIG:-ssd_large}; else CONFIG=${CONFIG:-demo}; fi
NNODES=${NNODES:-1}
NRANKS_PER_NODE=${NRANKS_PER_NODE:-2}
BATCH_SIZE=${BATCH_SIZE:-16}              # images per rank per step
EVAL_BATCH_SIZE=${EVAL_BATCH_SIZE:-16}    # images per rank per evaluation batch
PRECISION=${PRECISION:-float32}
LAUNCHER=${LAUNCHER:-horovodrun}          # single | horovodrun | mpirun
LAUNCHER_FLAGS=${LAUNCHER_FLAGS:---gloo}  # horovodrun --gloo: no MPI needed
HOSTS=${HOSTS:-localhost:2}
SETUP_FLAGS=${SETUP_FLAGS:-}              # ./setup_env.sh flags (--gpu on GPU machines)
COCO_DIR=${COCO_DIR:-}                    # empty: the synthetic dataset, generated into DEMO_DIR
DEMO_DIR=${DEMO_DIR:-data/demo}           # DEMO_DIR/coco (generated, cached), DEMO_DIR/tfrecords
DATA_DIR=${DATA_DIR:-}                    # TFRecords (train/, val/); default DEMO_DIR/tfrecords
LOG_DIR=${LOG_DIR:-runs}                  # each run gets LOG_DIR/<run name>/
SUBMISSION_ORG=${SUBMISSION_ORG:-reference}
SUBMISSION_PLATFORM=${SUBMISSION_PLATFORM:-cpu-2core}
