"""Imports PyTorch weights into the TensorFlow SSD-R34, without PyTorch.

    python -m ssd.import_weights --format torchvision resnet34-333f7ec4.pth --out weights/resnet34
    python -m ssd.import_weights --format reference resnet34-ssd1200.pth --out weights/ssd_r34

torchvision: the ImageNet ResNet34 -> the backbone training starts from; reference: a whole SSD-R34
with the key names of mlcommons/inference `ssd_r34.py` -> the model. Every key and shape is checked
before anything is written.
"""

from __future__ import annotations

import os
import re

import numpy as np

import tensorflow as tf
import tf_keras

from ssd import cli, config
from ssd.model import build_model
from ssd.torch_pickle import TorchFileError, load_state_dict

# Reference module prefixes and our (torchvision) layer-name prefixes.
REFERENCE_PREFIXES = (
    ("model.layer1.0.", "conv1."),
    ("model.layer1.1.", "bn1."),
    ("model.layer1.4.", "layer1."),
    ("model.layer1.5.", "layer2."),
    ("model.layer2.0.", "layer3."),
)
# torchvision ResNet34 keys the SSD backbone does not use.
TORCHVISION_UNUSED = re.compile(r"^(layer4\.|fc\.)")


class WeightImportError(ValueError):
    """A state dict that does not fit the model; the message names the file and the tensors."""


def _torch_tensors(layer) -> dict:
    """PyTorch parameter name -> (Keras variable, PyTorch shape) for a conv or batch-norm layer."""
    if isinstance(layer, tf_keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        out = {"weight": (layer.kernel, (cout, cin, kh, kw))}
        if layer.use_bias:
            out["bias"] = (layer.bias, (cout,))
        return out
    if isinstance(layer, tf_keras.layers.BatchNormalization):
        n = layer.gamma.shape[0]
        return {"weight": (layer.gamma, (n,)), "bias": (layer.beta, (n,)),
                "running_mean": (layer.moving_mean, (n,)), "running_var": (layer.moving_variance, (n,))}
    return {}


def _to_keras(array: np.ndarray, ndim: int) -> np.ndarray:
    """PyTorch conv weight [O, I, kh, kw] -> Keras kernel [kh, kw, I, O]; vectors unchanged."""
    return array.transpose(2, 3, 1, 0) if ndim == 4 else array


def _assign(layers, state: dict, path: str, file_key=lambda key: key, ignore=lambda key: False) -> int:
    """Copies state[file_key(layer name.param)] into each layer's variables after checking every key;
    returns the number of tensors copied."""
    wanted = {}
    for layer in layers:
        for param, (var, shape) in _torch_tensors(layer).items():
            wanted[file_key(f"{layer.name}.{param}")] = (var, shape)
    problems = []
    for key, (var, shape) in wanted.items():
        if key not in state:
            problems.append(f"missing tensor {key} {list(shape)}")
        elif tuple(state[key].shape) != shape:
            problems.append(f"tensor {key} has shape {list(state[key].shape)}, the model needs {list(shape)}")
    for key in state:
        if key not in wanted and not key.endswith("num_batches_tracked") and not ignore(key):
            problems.append(f"unexpected tensor {key} {list(state[key].shape)}")
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise WeightImportError(f"{path}: " + "; ".join(problems[:8]) + more)
    for key, (var, shape) in wanted.items():
        var.assign(_to_keras(np.asarray(state[key], dtype=np.float32), len(shape)))
    return len(wanted)


def _weighted_layers(model):
    return [layer for layer in model.layers if _torch_tensors(layer)]


def load_torchvision_backbone(backbone, state: dict, path: str = "<state dict>") -> int:
    """torchvision ResNet34 state dict -> the backbone's variables; returns the number of tensors."""
    return _assign(_weighted_layers(backbone), state, path, ignore=TORCHVISION_UNUSED.match)


def reference_key(key: str) -> str:
    """Our layer key -> the reference SSD-R34 key ("layer2.0.conv1.weight" -> "model.layer1.5.0.conv1.weight")."""
    for ref, ours in REFERENCE_PREFIXES:
        if key.startswith(ours):
            return ref + key[len(ours):]
    return key


def load_reference_model(model, state: dict, path: str = "<state dict>") -> int:
    """Reference SSD-R34 state dict -> every variable of the model; returns the number of tensors."""
    return _assign(_weighted_layers(model.backbone) + _weighted_layers(model), state, path, file_key=reference_key)


def import_weights(fmt: str, src: str, out_dir: str, cfg: config.Config) -> str:
    """Reads `src` (format "torchvision" | "reference"), writes the checkpoint and config.json to
    out_dir; returns the checkpoint path."""
    state = load_state_dict(src)
    model = build_model(cfg.model)
    if fmt == "torchvision":
        load_torchvision_backbone(model.backbone, state, src)
        ckpt = tf.train.Checkpoint(backbone=model.backbone)
    elif fmt == "reference":
        load_reference_model(model, state, src)
        ckpt = tf.train.Checkpoint(model=model)
    else:
        raise ValueError(f"unknown format {fmt!r} (torchvision | reference)")
    path = tf.train.CheckpointManager(ckpt, out_dir, max_to_keep=1).save()
    config.write_config(cfg, out_dir)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.import_weights", __doc__)
    parser.add_argument("--format", required=True, choices=("torchvision", "reference"))
    parser.add_argument("src", help="PyTorch state dict (.pth), zip or legacy format")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    config.add_config_args(parser)
    args = parser.parse_intermixed_args(argv)  # SRC and the key=value overrides may mix with options
    cfg = config.config_from_args(parser, args)
    try:
        path = import_weights(args.format, args.src, args.out, cfg)
    except (TorchFileError, WeightImportError, OSError) as err:
        parser.fail(str(err))
    print(f"wrote {path} and {os.path.join(args.out, 'config.json')}")


if __name__ == "__main__":
    main()
