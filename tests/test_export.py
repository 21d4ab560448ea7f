"""Export (ssd/export.py): SavedModel and frozen GraphDef in NHWC and NCHW, of a small model on
generated data; evaluating the export gives the checkpoint's 12 COCO stats; the frozen graph read
the MLPerf inference harness's way (optimize_for_inference, a TF1 Session, PostProcessCocoTf's box
order and class mapping) gives the project's evaluation's COCO detections, at 300 and at 1200 px."""

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf

from ssd import config, export
from ssd.anchors import default_boxes
from ssd.checkpoint import restore_model
from ssd.data import pipeline
from ssd.evaluate import Evaluator, Inference, detector, saved_model_detector
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
    # detection_bboxes: the detector's xyxy boxes as (ymin, xmin, ymax, xmax), not clipped.
    x1, y1, x2, y2 = np.moveaxis(det["boxes"].numpy(), -1, 0)
    np.testing.assert_allclose(got["detection_bboxes"], np.stack([y1, x1, y2, x2], -1), rtol=1e-5, atol=1e-6)
    assert (got["detection_bboxes"] < 0).any() or (got["detection_bboxes"] > 1).any()  # so: no clipping


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


# --- The MLPerf inference harness's way (vision/classification_and_detection/python, profile
# ssd-resnet34-tf): backend_tf loads the .pb as a TF1 GraphDef, runs optimize_for_inference on it
# (which folds the batch norms into the convolutions) and runs it in a tf.compat.v1.Session;
# coco.PostProcessCocoTf turns the three outputs into COCO detections. Written from that documented
# behaviour, not copied.

HARNESS_SCORE_THRESHOLD = 0.05  # PostProcessCocoTf stops at an image's first detection scoring below it


def harness_graph_def(pb):
    from tensorflow.python.tools import optimize_for_inference_lib

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    # Called directly: the harness falls back to the unoptimised graph on a ValueError; here it fails.
    return optimize_for_inference_lib.optimize_for_inference(graph_def, ["image"], list(HARNESS_OUTPUTS),
                                                             tf.float32.as_datatype_enum)


def harness_detections(outputs, image_ids, orig_sizes, category_ids) -> np.ndarray:
    """PostProcessCocoTf: per image, the detections in order up to the first score < 0.05; box
    (ymin, xmin, ymax, xmax) normalised -> COCO [x, y, w, h] in pixels of the original image; class
    c -> COCO id category_ids[c - 1] (the harness's label map counts the annotation file's categories
    from 1). Returns coco_eval.detection_array rows [N, 7]: image id, x, y, w, h, score, category id."""
    rows = []
    for i, image_id in enumerate(image_ids):
        height, width = (float(v) for v in orig_sizes[i])
        for box, cls, score in zip(outputs["detection_bboxes"][i], outputs["detection_classes"][i],
                                   outputs["detection_scores"][i]):
            if score < HARNESS_SCORE_THRESHOLD:
                break
            ymin, xmin, ymax, xmax = (float(v) for v in box)
            rows.append([image_id, xmin * width, ymin * height, (xmax - xmin) * width, (ymax - ymin) * height,
                         float(score), category_ids[int(cls) - 1]])
    return np.asarray(rows, np.float64).reshape(-1, 7)


def _exported_1200(root):
    """exported's tuple for a 1200-px model: the ssd_large geometry (strides 3,3,2,2,2,2, 15130
    default boxes) at the demo's width 0.125 and 4 classes, on the same generated val data."""
    ckpt, data = write_setup(root, ["model.image_size=1200", "model.strides=3,3,2,2,2,2"], "ckpt1200")
    export.main(["--checkpoint", str(ckpt), "--out", str(root / "export"), f"data.data_dir={data}"])
    return config.read_config(str(root / "export" / "config.json")), ckpt, root / "export", None


@pytest.fixture(scope="module")
def exported_1200(tmp_path_factory):
    return _exported_1200(tmp_path_factory.mktemp("export1200"))


@pytest.mark.parametrize("size", [300, 1200])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_harness_reading_of_the_frozen_graph_gives_the_evaluation_detections(request, size, layout):
    cfg, ckpt, out, _ = request.getfixturevalue("exported" if size == 300 else "exported_1200")
    assert cfg.model.image_size == size and cfg.eval.score_threshold == HARNESS_SCORE_THRESHOLD
    # The project's evaluation path: the checkpoint's detector over val, coco_eval.detection_array rows.
    evaluator = Evaluator(detector(restore_model(str(ckpt), cfg), cfg, default_boxes(cfg.model)), cfg, 0, 1)
    expected = evaluator.infer().detections
    assert len(expected) > 100  # real detections to compare

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(harness_graph_def(out / f"frozen_{layout}.pb"), name="")
    assert "FusedBatchNormV3" not in {n.op for n in graph.as_graph_def().node}  # folded by the harness's call
    batches = [{k: v.numpy() for k, v in b.items()} for b in pipeline.eval_dataset(cfg, 0, 1)]  # eager, before
    parts = []  # the Session makes its graph the default one
    with tf.compat.v1.Session(graph=graph) as session:
        for batch in batches:  # the images the evaluation ran on, preprocessed by its pipeline
            valid = batch["valid"]
            images = batch["image"][valid]
            if layout == "nchw":  # coco-1200-tf, the harness's dataset for this profile, feeds NCHW
                images = images.transpose(0, 3, 1, 2)
            outputs = session.run({name: f"{name}:0" for name in HARNESS_OUTPUTS}, {"image:0": images})
            parts.append(harness_detections(outputs, batch["image_id"][valid], batch["orig_size"][valid],
                                            evaluator.category_ids))
    got = np.concatenate(parts)
    # The same detections: per image, a one-to-one match of the harness's detections to the
    # evaluation's, each pair with the same category, boxes within 1e-3 px and scores within 1e-5.
    # Not bitwise (optimize_for_inference folds the batch norms; NCHW convolutions sum in another
    # order), and the generated-data detector's scores are nearly flat (neighbouring boxes of a class
    # often differ by 1e-7): where scores tie to float32 rounding, greedy NMS and the top-k cuts can
    # keep other candidates, and at 1200 px (15130 boxes) some do (measured 0.1% to 2.2% of them,
    # depending on the random weights; none at 300 px). So at least 99% (300 px) or 95% (1200 px) of
    # the evaluation's detections must be matched, and the 12 COCO stats of the harness's
    # detections must equal the evaluation's to 1e-3.
    unmatched, worst = 0, np.zeros(2)
    for image_id in np.union1d(got[:, 0], expected[:, 0]):
        g, e = got[got[:, 0] == image_id], expected[expected[:, 0] == image_id]
        free = np.ones(len(g), bool)
        for row in e:
            close = (free & (g[:, 6] == row[6]) & (np.abs(g[:, 1:5] - row[1:5]).max(axis=1) <= 1e-3)
                     & (np.abs(g[:, 5] - row[5]) <= 1e-5))
            if close.any():
                k = int(np.argmax(close))
                free[k] = False
                worst = np.maximum(worst, [np.abs(g[k, 1:5] - row[1:5]).max(), abs(g[k, 5] - row[5])])
            else:
                unmatched += 1
    allowed = 0.01 if size == 300 else 0.05
    assert unmatched <= allowed * len(expected), f"{unmatched} of {len(expected)} detections unmatched"
    stats = {name: evaluator.score(Inference(d, np.unique(expected[:, 0]).astype(np.int64), 0.0))
             for name, d in (("harness", got), ("evaluation", expected))}
    np.testing.assert_allclose(stats["harness"], stats["evaluation"], rtol=0, atol=1e-3)
    print(f"harness reading, {size} px {layout}: {len(got)} detections (evaluation {len(expected)}), "
          f"{unmatched} unmatched; matched pairs differ by at most {worst[0]:.1e} px, score {worst[1]:.1e}; "
          f"mAP {stats['harness'][0]:.6f} (evaluation {stats['evaluation'][0]:.6f})")
