"""Weight import without PyTorch: the .pth reader, torchvision and reference state dicts, the CLIs.

PyTorch (CPU, test-only) writes random-weight checkpoints and runs tests/torch_reference.py, a
PyTorch SSD-R34 with the reference's key names; the imported TensorFlow model must give the same
backbone features and head outputs (max abs difference < 1e-4). Each comparison prints its max abs
difference and the largest |output| (`pytest tests/test_import_weights.py -s -k pytorch`): the
figures the README quotes.
"""

import collections
import os
import re
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf

from conftest import require_module

torch = require_module("torch")

from ssd import config, import_weights, raw_outputs  # noqa: E402
from ssd.model import build_model, reference_layout  # noqa: E402
from ssd.model.resnet import build_backbone  # noqa: E402
from ssd.torch_pickle import TorchFileError, load_state_dict  # noqa: E402
from torch_reference import ResNet34, SSDR34, randomize  # noqa: E402

TOL = 1e-4


def _compare(what: str, ours, theirs) -> None:
    """Asserts max |ours - theirs| < TOL (theirs: PyTorch's output) and prints that difference with the
    largest |theirs|, naming the comparison (`what`: width, input size, output)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    diff, scale = float(np.abs(ours - theirs).max()), float(np.abs(theirs).max())
    print(f"\n{what} {list(theirs.shape)}: max |TF - PyTorch| {diff:.2g}, max |PyTorch| {scale:.3g}")
    assert diff < TOL, f"{what}: max |TF - PyTorch| {diff} >= {TOL}"


def _save(obj, path, legacy):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return str(path)


def _numpy_state(module):
    return {k: v.numpy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_gives_the_tensors_torch_saved(tmp_path, legacy):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict(
        weight=torch.randn(2, 3, 3, 3), view=base[1:3, ::2], transposed=base.t(), count=torch.tensor(7),
        half=torch.randn(5).half(), ints=torch.arange(4, dtype=torch.int32), flags=torch.tensor([True, False]))
    read = load_state_dict(_save(state, tmp_path / "s.pth", legacy))
    assert list(read) == list(state)
    for key, tensor in state.items():
        assert read[key].shape == tuple(tensor.shape) and read[key].dtype == tensor.numpy().dtype
        np.testing.assert_array_equal(read[key], tensor.numpy())
    bf16 = load_state_dict(_save({"w": torch.tensor([1.5, -2.25]).bfloat16()}, tmp_path / "b.pth", legacy))
    np.testing.assert_array_equal(bf16["w"], [1.5, -2.25])


def _write_2017_file(path, state):
    """A legacy file as torch 0.3 wrote torchvision's resnet34-333f7ec4.pth: pickle protocol 2,
    tensors as torch._utils._rebuild_tensor (not _v2), storage ids with a view_metadata slot."""

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class OldTensor:
        def __init__(self, storage):
            self.storage = storage

        def __reduce__(self):
            shape = self.storage.array.shape
            strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
            return torch._utils._rebuild_tensor, (self.storage, 0, shape, strides)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return "storage", torch.FloatStorage, obj.key, "cpu", obj.array.size, None
            return None

    storages = [Storage(str(1000 + i), np.ascontiguousarray(a, np.float32)) for i, a in enumerate(state.values())]
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        Pickler(f, protocol=2).dump(collections.OrderedDict(zip(state, map(OldTensor, storages))))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.array.size) + s.array.tobytes())
    return str(path)


def test_reader_takes_the_2017_torchvision_format(tmp_path):
    state = {"conv1.weight": np.random.default_rng(0).normal(size=(4, 3, 7, 7)), "bn1.bias": np.arange(4.0)}
    path = _write_2017_file(tmp_path / "old.pth", state)
    by_torch = torch.load(path, weights_only=False)  # the file is what PyTorch itself reads
    read = load_state_dict(path)
    for key, value in state.items():
        np.testing.assert_array_equal(read[key], by_torch[key].numpy())
        np.testing.assert_array_equal(read[key], value.astype(np.float32))


class _RunsCode:
    """Pickles as a call of os.remove(marker): a file that would run code if unpickled naively."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.remove, (str(self.marker),)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_refuses_truncated_files_and_runs_no_code(tmp_path, legacy):
    path = _save({"w": torch.randn(100, 100)}, tmp_path / "s.pth", legacy)
    data = open(path, "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) - 5000])
    with pytest.raises(TorchFileError, match="cut.pth"):
        load_state_dict(str(cut))
    marker = tmp_path / "marker"
    marker.write_text("still here")
    code = _save({"w": _RunsCode(marker)}, tmp_path / "code.pth", legacy)
    with pytest.raises(TorchFileError, match="code.pth: holds neither a state dict nor a module of tensors"):
        load_state_dict(code)
    assert marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reader_takes_a_whole_pickled_module_as_its_state_dict(tmp_path, legacy):
    # The MLPerf inference file resnet34-ssd1200.pytorch is a pickled SSD_R34 module, not a state dict.
    module = randomize(SSDR34(4, (1, 1, 2, 2, 2, 1), width=0.125))
    module.register_buffer("scratch", torch.zeros(2), persistent=False)  # not in state_dict()
    read = load_state_dict(_save(module, tmp_path / "module.pth", legacy))
    expected = module.state_dict()
    assert list(read) == list(expected)
    for key, tensor in expected.items():
        np.testing.assert_array_equal(read[key], tensor.numpy())


def _reference_cfg(size, strides, classes=5):
    return config.load_config("ssd_large", [f"model.image_size={size}", "model.width_multiplier=0.125",
                                            f"model.num_classes={classes}",
                                            "model.strides=" + ",".join(map(str, strides))])


@pytest.mark.parametrize("size,strides", [(480, (3, 3, 2, 2, 2, 2)), (300, (1, 1, 2, 2, 2, 1))],
                         ids=["strides-1200", "strides-300"])
def test_reference_import_gives_the_pytorch_outputs(size, strides):
    cfg = _reference_cfg(size, strides)
    torch_model = randomize(SSDR34(5, strides, width=0.125), seed=1)
    model = build_model(cfg.model)
    assert import_weights.load_reference_model(model, _numpy_state(torch_model)) == len(
        [k for k in torch_model.state_dict() if not k.endswith("num_batches_tracked")])
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        features, locs, confs = (t.numpy() for t in torch_model(torch.from_numpy(x)))
    images = tf.transpose(x, [0, 2, 3, 1])
    ours = model.backbone(images, training=False).numpy().transpose(0, 3, 1, 2)
    py_loc, py_cls = reference_layout(*model(images, training=False))
    what = f"width 0.125, {size} px, strides {list(strides)}"
    _compare(f"{what}, backbone", ours, features)
    _compare(f"{what}, py_location_pred", py_loc, locs)
    _compare(f"{what}, py_cls_pred", py_cls, confs)


def test_reference_file_that_does_not_fit_names_the_tensor():
    cfg = _reference_cfg(300, (1, 1, 2, 2, 2, 1))
    state = _numpy_state(randomize(SSDR34(5, (1, 1, 2, 2, 2, 1), width=0.125)))
    model = build_model(cfg.model)
    missing = {k: v for k, v in state.items() if k != "model.layer1.5.0.conv1.weight"}
    with pytest.raises(import_weights.WeightImportError, match=r"missing tensor model\.layer1\.5\.0\.conv1\.weight"):
        import_weights.load_reference_model(model, missing, "r.pth")
    with pytest.raises(import_weights.WeightImportError, match=r"unexpected tensor loc\.6\.weight"):
        import_weights.load_reference_model(model, {**state, "loc.6.weight": np.zeros(3)}, "r.pth")
    other = build_model(_reference_cfg(300, (1, 1, 2, 2, 2, 1), classes=4).model)
    with pytest.raises(import_weights.WeightImportError, match=r"tensor conf\.0\.weight has shape \[20, 32, 3, 3\], "
                                                               r"the model needs \[16, 32, 3, 3\]"):
        import_weights.load_reference_model(other, state, "r.pth")


def test_reference_cli_then_raw_outputs(tmp_path, repo_root):
    torch_model = randomize(SSDR34(4, (1, 1, 2, 2, 2, 1), width=0.125), seed=2)
    src = _save(torch_model.state_dict(), tmp_path / "ssd_r34.pth", legacy=False)
    out = tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "ssd.import_weights", "--format", "reference", src, "--out", str(out),
           "--config", "demo"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "config.json").is_file()
    x = np.random.default_rng(3).normal(size=(3, 3, 300, 300)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    raw_outputs.main(["--checkpoint", str(out), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npz"),
                      "--batch-size", "2"])
    y = np.load(tmp_path / "y.npz")
    with torch.no_grad():
        _, locs, confs = (t.numpy() for t in torch_model(torch.from_numpy(x)))
    _compare("raw_outputs CLI, width 0.125, 300 px, py_location_pred", y["py_location_pred"], locs)
    _compare("raw_outputs CLI, width 0.125, 300 px, py_cls_pred", y["py_cls_pred"], confs)


def test_cli_error_names_the_file_and_writes_nothing(tmp_path, capsys):
    state = randomize(SSDR34(5, (1, 1, 2, 2, 2, 1), width=0.125)).state_dict()
    src = _save(state, tmp_path / "five_classes.pth", legacy=True)
    with pytest.raises(SystemExit):
        import_weights.main(["--format", "reference", src, "--out", str(tmp_path / "out"), "--config", "demo"])
    assert re.match(r"ssd.import_weights: \S+five_classes.pth: .*conf\.0\.weight has shape", capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


@pytest.mark.full_model
def test_torchvision_import_gives_the_pytorch_trunk(tmp_path):
    # A full-width torchvision ResNet34 (random weights) in the legacy format of the real file.
    resnet = randomize(ResNet34(), seed=4)
    src = _save(resnet.state_dict(), tmp_path / "resnet34.pth", legacy=True)
    out = tmp_path / "backbone"
    import_weights.main(["--format", "torchvision", src, "--out", str(out), "--config", "demo",
                         "model.width_multiplier=1.0"])
    cfg = config.read_config(str(out / "config.json"))
    assert cfg.model.width_multiplier == 1.0
    model = build_model(cfg.model)
    tf.train.Checkpoint(backbone=model.backbone).read(tf.train.latest_checkpoint(str(out))) \
        .assert_existing_objects_matched()
    x = np.random.default_rng(5).normal(size=(1, 3, 300, 300)).astype(np.float32)
    with torch.no_grad():
        t = torch.from_numpy(x)
        y = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(t))))
        y = resnet.layer2(resnet.layer1(y))
        block = resnet.layer3[0]
        block.conv1.stride, block.downsample[0].stride = (1, 1), (1, 1)
        features = resnet.layer3(y).numpy()
    ours = model.backbone(tf.transpose(x, [0, 2, 3, 1]), training=False).numpy().transpose(0, 3, 1, 2)
    assert ours.shape == features.shape == (1, 256, 38, 38)
    _compare("torchvision import, width 1.0, 300 px, backbone", ours, features)


def test_torchvision_file_for_another_width_names_the_tensor():
    state = _numpy_state(randomize(ResNet34(width=0.25)))
    backbone = build_backbone(64, width_multiplier=0.125)
    with pytest.raises(import_weights.WeightImportError, match=r"tensor conv1\.weight has shape \[16, 3, 7, 7\], "
                                                               r"the model needs \[8, 3, 7, 7\]"):
        import_weights.load_torchvision_backbone(backbone, state, "r.pth")
