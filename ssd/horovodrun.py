"""`python -m ssd.horovodrun ARGS` is `horovodrun ARGS` with TensorFlow's start-up noise dropped.

horovodrun checks its TensorFlow extension in a forked child that imports TensorFlow; run as a
module of this package, the package's quiet import (ssd/__init__.py) is in place before the fork.
"""

import sys

from horovod.runner.launch import run_commandline

if __name__ == "__main__":
    sys.argv[0] = "horovodrun"
    sys.exit(run_commandline())
