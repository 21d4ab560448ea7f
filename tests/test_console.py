"""The calm console: TensorFlow's start-up noise is dropped, every other line of its start kept;
the atomic JSON writer."""

import json
import os
import re
import subprocess
import sys

import ssd
from ssd.jsonfile import write_json

NOISE_LINE = re.compile(r"E0000|cuda_|cuInit|oneDNN")  # the assertion on the default run


def _start_tensorflow(repo_root, **env) -> str:
    """stderr of a process that imports ssd, then TensorFlow, and runs one op."""
    code = "import ssd, tensorflow as tf; print(int(tf.constant(2) + 1))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=300)
    assert proc.returncode == 0 and proc.stdout == "3\n", proc.stderr
    return proc.stderr


def test_tensorflow_starts_quietly(repo_root):
    stderr = _start_tensorflow(repo_root)
    assert not [line for line in stderr.splitlines() if NOISE_LINE.search(line)], stderr


def test_other_start_up_lines_are_kept(repo_root):
    # At log level 0 TensorFlow's import also prints an info line about oneDNN: not noise, so kept.
    stderr = _start_tensorflow(repo_root, TF_CPP_MIN_LOG_LEVEL="0")
    assert "oneDNN custom operations are on" in stderr, stderr
    assert not ssd.NOISE.search(stderr), stderr


def test_xla_starts_quietly_under_quiet_stderr(repo_root):
    # What ssd.train's _trace does: XLA logs its start (3 info lines) at its first compilation.
    code = ("import ssd, tensorflow as tf\n"
            "with ssd.quiet_stderr():\n"
            "    print(int(tf.function(lambda: tf.constant(2) + 1, jit_compile=True)()))\n"
            "print(int(tf.function(lambda: tf.constant(3) + 1, jit_compile=True)()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "3\n4\n", proc.stderr
    assert not re.search(r"XLA|StreamExecutor|I0000", proc.stderr), proc.stderr


def test_drop_noise_drops_exactly_the_noise():
    text = ("2026-11-29 E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:477] Unable to register cuFFT "
            "factory: Attempting to register factory for plugin cuFFT when one has already been registered\n"
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "E0000 00:00:1795994051.625952 19008 cuda_dnn.cc:8310] Unable to register cuDNN factory: ...\n"
            "E0000 00:00:1795994051.636924 19008 cuda_blas.cc:1418] Unable to register cuBLAS factory: ...\n"
            "E external/local_xla/xla/stream_executor/cuda/cuda_driver.cc:152] failed call to cuInit: "
            "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
            "I0000 00:00:1796009995.470388 9103 service.cc:148] XLA service 0x7f94f42ab240 initialized for "
            "platform Host (this does not guarantee that XLA will be used). Devices:\n"
            "I0000 00:00:1796009995.470701 9103 service.cc:156]   StreamExecutor device (0): Host, Default Version\n"
            "I0000 00:00:1796009995.581426 9103 device_compiler.h:188] Compiled cluster using XLA!  This line is "
            "logged at most once for the lifetime of the process.\n"
            "E tensorflow/core/framework/op_kernel.cc:1] a real error\n"
            "no newline at the end")
    assert ssd.drop_noise(text) == "E tensorflow/core/framework/op_kernel.cc:1] a real error\nno newline at the end"


def test_write_json(tmp_path):
    data = {"a": [1, 2.5, None], "b": "é"}
    path = write_json(str(tmp_path / "new" / "x.json"), data)
    assert json.loads(open(path).read()) == data and os.listdir(tmp_path / "new") == ["x.json"]
    write_json(path, [0.1 + 0.2], indent=None)  # replaces; one line, float64 exact
    assert open(path).read() == "[0.30000000000000004]\n"
