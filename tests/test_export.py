"""Export (ssd/export.py): SavedModel and frozen GraphDef in NHWC and NCHW, of a small model on
generated data; evaluating the export gives the checkpoint's 12 COCO stats."""

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf

from ssd import config, export
from ssd.anchors import default_boxes
from ssd.checkpoint import restore_model
from ssd.evaluate import Evaluator, detector, saved_model_detector
from ssd.model import reference_layout
from test_evaluate import write_setup


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(config, checkpoint dir, export dir, a batch of 3 NHWC images) after `python -m ssd.export`."""
    root = tmp_path_factory.mktemp("export")
    ckpt, data = write_setup(root)
    export.main(["--checkpoint", str(ckpt), "--out", str(root / "export"), f"data.data_dir={data}"])
    cfg = config.read_config(str(root / "export" / "config.json"))
    images = tf.random.stateless_normal([3, cfg.model.image_size, cfg.model.image_size, 3], seed=[1, 2])
    return cfg, ckpt, root / "export", images


def _outputs(fn, images):
    return {k: v.numpy() for k, v in fn(image=images).items()}


def test_export_writes_four_models_with_the_named_outputs(exported):
    cfg, ckpt, out, images = exported
    assert {p.name for p in out.iterdir()} == {"config.json", "saved_model_nhwc", "saved_model_nchw",
                                               "frozen_nhwc.pb", "frozen_nchw.pb"}
    signature = tf.saved_model.load(str(out / "saved_model_nhwc")).signatures["serving_default"]
    got = _outputs(signature, images)
    n, c, d = default_boxes(cfg.model).shape[0], cfg.model.num_classes, cfg.eval.max_detections
    assert {k: v.shape for k, v in got.items()} == {
        "detection_bboxes": (3, d, 4), "detection_scores": (3, d), "detection_classes": (3, d),
        "py_location_pred": (3, 4, n), "py_cls_pred": (3, c, n)}
    assert got["detection_classes"].dtype == np.int32
    # The checkpoint's model: the same raw outputs in the reference layout, the same detections.
    model = restore_model(str(ckpt), cfg)
    loc, logits = model(images, training=False)
    py_loc, py_cls = reference_layout(loc, logits)
    np.testing.assert_allclose(got["py_location_pred"], py_loc.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["py_cls_pred"], py_cls.numpy(), rtol=1e-5, atol=1e-5)
    det = detector(model, cfg, default_boxes(cfg.model))(images)
    np.testing.assert_array_equal(got["detection_classes"], det["classes"].numpy())
    np.testing.assert_allclose(got["detection_scores"], det["scores"].numpy(), rtol=1e-5)


HARNESS_OUTPUTS = ("detection_bboxes", "detection_classes", "detection_scores")  # MLPerf inference ssd-resnet34-tf


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_frozen_graph_has_one_input_and_gives_the_saved_model_outputs(exported, layout):
    _, _, out, images = exported
    pb = out / f"frozen_{layout}.pb"
    graph_def = tf.compat.v1.GraphDef.FromString(pb.read_bytes())
    assert [n.name for n in graph_def.node if n.op == "Placeholder"] == ["image"]
    assert not graph_def.library.function  # all in the one graph: the NMS loop is TF1 control flow
    assert "Enter" in {n.op for n in graph_def.node}
    if layout == "nchw":
        images = tf.transpose(images, [0, 3, 1, 2])
    saved = _outputs(tf.saved_model.load(str(out / f"saved_model_{layout}")).signatures["serving_default"], images)
    assert (saved["detection_scores"] > 0).sum() > 100  # real detections to compare, not just padding
    # As the MLPerf inference harness runs it (a TF1 Session, `image:0` fed, its three outputs
    # fetched by name): the same kernels on the same graph, so bitwise the same numbers.
    frozen = export.run_frozen_graph(str(pb), images.numpy(), HARNESS_OUTPUTS)
    for name in HARNESS_OUTPUTS:
        assert frozen[name].dtype == saved[name].dtype, name
        np.testing.assert_array_equal(frozen[name], saved[name], err_msg=name)
    raw = export.run_frozen_graph(str(pb), images.numpy(), ("py_location_pred", "py_cls_pred"))
    for name, value in raw.items():
        np.testing.assert_array_equal(value, saved[name], err_msg=name)


def test_nchw_export_takes_nchw_input_and_agrees_with_nhwc(exported):
    cfg, _, out, images = exported
    nchw = tf.saved_model.load(str(out / "saved_model_nchw")).signatures["serving_default"]
    assert nchw.structured_input_signature[1]["image"].shape.as_list() == [None, 3, cfg.model.image_size,
                                                                            cfg.model.image_size]
    nhwc = tf.saved_model.load(str(out / "saved_model_nhwc")).signatures["serving_default"]
    a, b = _outputs(nhwc, images), _outputs(nchw, tf.transpose(images, [0, 3, 1, 2]))
    # NCHW convolutions sum in another order: equal to float32 rounding of the largest values.
    for name in ("py_location_pred", "py_cls_pred", "detection_scores"):
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-5 * np.abs(a[name]).max(), err_msg=name)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_evaluating_the_export_gives_the_checkpoint_stats(exported, layout):
    cfg, ckpt, out, _ = exported
    anchors = default_boxes(cfg.model)
    from_checkpoint = Evaluator(detector(restore_model(str(ckpt), cfg), cfg, anchors), cfg, 0, 1).evaluate()
    from_export = Evaluator(saved_model_detector(str(out / f"saved_model_{layout}")), cfg, 0, 1).evaluate()
    assert from_export["num_images"] == from_checkpoint["num_images"]
    if layout == "nhwc":  # the same graph: the same numbers
        assert from_export["stats"] == from_checkpoint["stats"]
    else:  # scores equal to float32 rounding (above) could swap two detections' order
        np.testing.assert_allclose(from_export["stats"], from_checkpoint["stats"], rtol=0, atol=1e-4)
