"""Every `python -m <module>` of the project follows one convention (ssd.cli): `--config NAME` +
key=value overrides where it uses a config, `--out` where it writes, and a failure is one line
`<module>: <reason>` on stderr with a non-zero status (2 for a wrong command line), no traceback."""

import importlib
import json
import subprocess
import sys

import pytest

from conftest import child_env

MODULES = ["ssd.anchors", "ssd.config", "ssd.evaluate", "ssd.export", "ssd.import_weights", "ssd.plots",
           "ssd.raw_outputs", "ssd.train", "ssd.data.prepare", "ssd.data.synthetic", "benchmark.eval_speed",
           "benchmark.input_pipeline", "benchmark.model_stats", "benchmark.train_throughput",
           "compliance.check_submission", "compliance.mllog_records", "compliance.summarize"]
# The arguments each module needs besides its config overrides, for those that take a config.
CONFIGURED = {"ssd.anchors": ["--out", "anchors.npy"], "ssd.config": [], "ssd.train": [],
              "ssd.evaluate": ["--checkpoint", "."], "ssd.export": ["--checkpoint", ".", "--out", "export"],
              "ssd.import_weights": ["--format", "torchvision", "weights.pth", "--out", "imported"],
              "benchmark.input_pipeline": [], "benchmark.model_stats": [], "benchmark.train_throughput": []}


def failure(module: str, argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of module's main(argv) run in this process; it must end by SystemExit."""
    with pytest.raises(SystemExit) as end:
        importlib.import_module(module).main(argv)
    return end.value.code, capsys.readouterr().err


@pytest.mark.parametrize("module", MODULES)
def test_a_wrong_command_line_is_one_line(module, capsys):
    code, err = failure(module, ["--no-such-flag"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"{module}: ") and err.endswith("(--help lists the arguments)\n")


@pytest.mark.parametrize("module", sorted(CONFIGURED))
def test_a_bad_override_is_one_line(module, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # nothing is written: the config fails first
    code, err = failure(module, [*CONFIGURED[module], "train.batch_size=abc"], capsys)
    assert code == 1
    assert err == f"{module}: train.batch_size: expected int, got 'abc'\n"
    assert not list(tmp_path.iterdir())


def test_a_failure_after_the_config_is_one_line(capsys):
    code, err = failure("benchmark.input_pipeline", ["data.data_dir=/nonexistent"], capsys)
    assert code == 1
    assert err == ("benchmark.input_pipeline: /nonexistent/train: no such directory "
                   "(python -m ssd.data.prepare writes it)\n")


def test_a_real_process_prints_no_traceback(repo_root):
    proc = subprocess.run([sys.executable, "-m", "ssd.train", "--config", "nope"], cwd=repo_root, env=child_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "ssd.train: unknown config 'nope' (presets: ssd_large, demo, coco128)"
    assert "Traceback" not in proc.stderr


def test_out_names_the_results_file(repo_root, tmp_path):
    out = tmp_path / "stats.json"
    proc = subprocess.run([sys.executable, "-m", "benchmark.model_stats", "--config", "demo", "--out", str(out)],
                          cwd=repo_root, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(out.read_text())
    assert f"trainable_params={stats['trainable_params']}" in proc.stdout.splitlines()
    assert stats["command"] == "python -m benchmark.model_stats --config demo"


def test_a_missing_run_file_is_one_line(tmp_path, capsys):
    code, err = failure("ssd.plots", [str(tmp_path)], capsys)  # an empty run directory
    assert code == 1
    assert err == f"ssd.plots: [Errno 2] No such file or directory: '{tmp_path / 'config.json'}'\n"


def test_an_unknown_gpu_peak_is_a_value_error():
    from benchmark.train_throughput import peak_tflops

    with pytest.raises(ValueError, match=r"^no peak known for 'NVIDIA Z9' in float32: pass --peak-tflops$"):
        peak_tflops("NVIDIA Z9", "float32")
