import dataclasses
import json
import subprocess
import sys

import pytest

import ssd  # noqa: F401 (selects Keras 2 before TensorFlow loads)
import tf_keras

from ssd.config import ConfigError, load_config, read_config, write_config
from ssd.model import build_model


def test_presets_resolve():
    large = load_config("ssd_large")
    assert large.model.image_size == 1200 and large.model.num_classes == 81
    assert large.model.strides == (3, 3, 2, 2, 2, 2)
    assert large.eval.target_map == 0.225
    assert large.eval_epochs() == [40, 50, 55, 60, 65, 70, 75, 80]
    demo = load_config("demo")
    assert demo.model.strides == (1, 1, 2, 2, 2, 1)


# The values in which the guide lets the demo's model differ from ssd_large's.
DEMO_MODEL_VALUES = {"image_size", "width_multiplier", "strides", "num_classes"}


def _layout(model):
    """Per layer: name, class, weight shapes and its config apart from what follows the strides: the
    heads' reshapes to [N, boxes, k], and the pads (a PyTorch pad is a `same` conv at stride 1 and an
    explicit ZeroPadding2D + `valid` conv otherwise, ssd.model.layers)."""
    layout = []
    for layer in model.submodules:
        if isinstance(layer, tf_keras.layers.Layer) and not isinstance(layer, tf_keras.layers.ZeroPadding2D):
            conf = {k: v for k, v in layer.get_config().items() if k not in ("strides", "padding", "target_shape")}
            layout.append((layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights], conf))
    return sorted(layout, key=lambda entry: entry[0])


def _conv_strides(model):
    return {layer.name: layer.strides for layer in model.submodules if isinstance(layer, tf_keras.layers.Conv2D)}


def test_demo_is_ssd_large_with_other_values():
    """The demo is the reference model with other input size, width, strides and classes, never another
    model: its model config differs only there, and ssd_large built at the demo's width and classes (at
    480 px, which both strides accept) has the demo's layers, weights and layer settings but the strides."""
    large, demo = load_config("ssd_large").model, load_config("demo").model
    differ = {f.name for f in dataclasses.fields(large) if getattr(large, f.name) != getattr(demo, f.name)}
    assert differ == DEMO_MODEL_VALUES
    shared = dict(image_size=480, width_multiplier=demo.width_multiplier, num_classes=demo.num_classes)
    demo_model = build_model(dataclasses.replace(demo, **shared))
    large_model = build_model(dataclasses.replace(large, **shared))
    assert _layout(demo_model) == _layout(large_model)
    large_strides, demo_strides = _conv_strides(large_model), _conv_strides(demo_model)
    # strides [box head, class head, conv7..conv10]: (3, 3, 2, 2, 2, 2) in ssd_large, (1, 1, 2, 2, 2, 1) in the demo
    assert sorted(name for name in large_strides if large_strides[name] != demo_strides[name]) == [
        "additional_blocks.3.2", *(f"conf.{i}" for i in range(6)), *(f"loc.{i}" for i in range(6))]


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
    assert proc.stderr.strip() == "ssd.config: train.batch_size: expected int, got 'abc'"


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
