import json
import subprocess
import sys

import pytest

from ssd.config import ConfigError, load_config, read_config, write_config


def test_presets_resolve():
    large = load_config("ssd_large")
    assert large.model.image_size == 1200 and large.model.num_classes == 81
    assert large.model.strides == (3, 3, 2, 2, 2, 2)
    assert large.eval.target_map == 0.225
    assert large.eval_epochs() == [40, 50, 55, 60, 65, 70, 75, 80]
    demo = load_config("demo")
    # The demo is the same model family with other values, never another model.
    assert type(demo.model) is type(large.model)
    assert demo.model.strides == (1, 1, 2, 2, 2, 1)


def test_overrides_are_typed():
    cfg = load_config("demo", ["train.batch_size=8", "eval.epochs=2,3", "train.xla=true", "train.base_lr=1e-2",
                               "model.box_variances=0.1,0.2"])
    assert cfg.train.batch_size == 8 and cfg.eval.epochs == (2, 3) and cfg.train.xla is True
    assert cfg.train.base_lr == 1e-2 and cfg.model.box_variances == (0.1, 0.2)


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=abc", "train.batch_size: expected int, got 'abc'"),
    ("nonexistent.key=1", "unknown config key 'nonexistent.key'"),
    ("train.nokey=1", "unknown config key 'train.nokey'"),
    ("train.xla=maybe", "train.xla: expected a bool"),
    ("train.precision=fp8", "train.precision: float32 | bfloat16 | float16"),
    ("model.box_variances=0.1", "model.box_variances: expected 2 comma-separated values"),
    ("batch_size", "is not of the form section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config("ssd_large", [override])
    assert message in str(err.value)


def test_cli_bad_override_is_one_line(repo_root):
    proc = subprocess.run([sys.executable, "-m", "ssd.config", "train.batch_size=abc"], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "config error: train.batch_size: expected int, got 'abc'"


def test_cli_prints_resolved_config(repo_root):
    proc = subprocess.run([sys.executable, "-m", "ssd.config", "--config", "demo", "train.epochs=3"],
                          cwd=repo_root, capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["train"]["epochs"] == 3


def test_write_read_round_trip(tmp_path):
    cfg = load_config("demo", ["train.seed=7", "eval.epochs=1,2"])
    path = write_config(cfg, str(tmp_path / "run"))
    assert read_config(path) == cfg


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        load_config("nope")
