"""The benchmarks' command lines: `--config NAME` + key=value overrides where they use a config, `--out` where
they write, and a bad argument ends them with a one-line message and a non-zero status (no traceback)."""

import json
import subprocess
import sys

import pytest

from conftest import child_env


def run(repo_root, *argv):
    return subprocess.run([sys.executable, "-m", *argv], cwd=repo_root, env=child_env(), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("argv, message", [
    (["benchmark.model_stats", "train.batch_size=abc"], "train.batch_size: expected int, got 'abc'"),
    (["benchmark.train_throughput", "--config", "nope"], "unknown config 'nope'"),
    (["benchmark.input_pipeline", "model.image_size=big"], "model.image_size: expected int, got 'big'"),
    (["benchmark.input_pipeline", "data.data_dir=/nonexistent"],
     "input_pipeline: /nonexistent/train: no such directory (python -m ssd.data.prepare writes it)"),
])
def test_bad_arguments_end_with_one_line(repo_root, argv, message):
    proc = run(repo_root, *argv)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]


def test_out_names_the_results_file(repo_root, tmp_path):
    out = tmp_path / "stats.json"
    proc = run(repo_root, "benchmark.model_stats", "--config", "demo", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(out.read_text())
    assert f"trainable_params={stats['trainable_params']}" in proc.stdout.splitlines()
    assert stats["command"] == "python -m benchmark.model_stats --config demo"
