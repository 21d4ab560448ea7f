"""ssd-large: SSD-ResNet34 at 1200x1200 on COCO 2017, an MLPerf-style training benchmark.

Horovod's TensorFlow integration needs Keras 2 (with Keras 3, `broadcast_variables` and
`DistributedGradientTape` fail on Keras variables), so the package selects tf-keras before
TensorFlow is imported anywhere: users never set TF_USE_LEGACY_KERAS themselves.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
