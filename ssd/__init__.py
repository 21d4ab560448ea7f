"""ssd-large: SSD-ResNet34 at 1200x1200 on COCO 2017, an MLPerf-style training benchmark.

Importing the package prepares TensorFlow's start, whoever imports TensorFlow first:
- Keras 2 (tf-keras): Horovod's `broadcast_variables` and `DistributedGradientTape` fail on Keras 3
  variables, so users never set TF_USE_LEGACY_KERAS themselves;
- a calm console: TensorFlow's import and its first device query print, on every machine without
  a GPU, the lines matched by NOISE (CUDA plugin factories registered twice, cuInit failing).
  Those two steps run with stderr captured (`quiet_stderr`); every other line is written back to
  stderr. `ssd.train` also starts XLA under it: XLA logs its start the first time it compiles.
Processes that never import TensorFlow (the background scorer) pay nothing.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NOISE = re.compile(
    r"Unable to register cu(DNN|FFT|BLAS) factory"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|failed call to cuInit"
    r"|XLA service 0x[0-9a-f]+ initialized for platform|StreamExecutor device \(\d+\): |Compiled cluster using XLA!"
)


def drop_noise(text: str) -> str:
    """`text` without its lines that match NOISE (a line's newline goes with it)."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


class _QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `tensorflow` once and executes it (and lists the devices) with fd 2 captured."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with quiet_stderr():
            self._loader.exec_module(module)
            module.config.list_physical_devices()  # initialises the platforms (cuInit) now


@contextlib.contextmanager
def quiet_stderr():
    """Captures fd 2 (C++ logging included) while the block runs, then writes back every line that
    does not match NOISE."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write(drop_noise(captured.read().decode(errors="replace")))
            sys.stderr.flush()


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlow())
