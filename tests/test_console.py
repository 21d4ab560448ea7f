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


def test_drop_noise_drops_exactly_the_noise():
    text = ("2026-11-29 E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:477] Unable to register cuFFT "
            "factory: Attempting to register factory for plugin cuFFT when one has already been registered\n"
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "E0000 00:00:1795994051.625952 19008 cuda_dnn.cc:8310] Unable to register cuDNN factory: ...\n"
            "E0000 00:00:1795994051.636924 19008 cuda_blas.cc:1418] Unable to register cuBLAS factory: ...\n"
            "E external/local_xla/xla/stream_executor/cuda/cuda_driver.cc:152] failed call to cuInit: "
            "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
            "E tensorflow/core/framework/op_kernel.cc:1] a real error\n"
            "no newline at the end")
    assert ssd.drop_noise(text) == "E tensorflow/core/framework/op_kernel.cc:1] a real error\nno newline at the end"


def test_write_json(tmp_path):
    data = {"a": [1, 2.5, None], "b": "é"}
    path = write_json(str(tmp_path / "new" / "x.json"), data)
    assert json.loads(open(path).read()) == data and os.listdir(tmp_path / "new") == ["x.json"]
    write_json(path, [0.1 + 0.2], indent=None)  # replaces; one line, float64 exact
    assert open(path).read() == "[0.30000000000000004]\n"
