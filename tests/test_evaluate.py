"""Distributed COCO evaluation (ssd/evaluate.py) of a small model on generated val data: 1 rank in
process, 1 and 2 real Horovod ranks, the image-set check, the CLI."""

import json
import shutil

import numpy as np
import pytest

import ssd  # noqa: F401
import tensorflow as tf

from ssd import coco_eval, config
from ssd.checkpoint import restore_model
from ssd.anchors import boxes_per_location, default_boxes
from ssd.data import prepare, synthetic
from ssd.evaluate import Evaluator, detector
from ssd.model import build_model
from ssd.data.manifest import read_manifest

from conftest import require_module

NUM_VAL = 11  # not a multiple of ranks x batch (2 x 4): rank 0 holds 6 images, rank 1 holds 5


def head_weights(kernel, bias, map_index, nd, head):
    """Random heads turned into a weak detector: the head kernels scaled down (the random trunk's
    features are large, so the scores would saturate), and class biases that favour the default
    boxes of maps 2-5 (the larger ones) for every class. Scores then still vary by image, and the
    generated shapes give small non-zero COCO stats. Channel = class * nd + box."""
    kernel = kernel * 1e-3
    if head == "conf":
        bias = np.where(np.arange(bias.shape[0]) >= nd, 1.0 if map_index >= 2 else -1.0, 0.0).astype(bias.dtype)
    return kernel, bias


def write_setup(root, overrides=(), ckpt_name="ckpt"):
    """(checkpoint dir, data dir) under root: generated val data and the checkpoint of the demo
    model (300 px, 3 classes and background; `overrides` change it) with random weights and the
    heads of head_weights."""
    synthetic.write_split(str(root / "coco"), "val2017", NUM_VAL, seed=0, workers=1)
    prepare.prepare(str(root / "coco" / "val2017"), str(root / "coco" / "annotations" / "instances_val2017.json"),
                    "val", str(root / "data" / "val"), num_shards=2)
    cfg = config.load_config("demo", [f"data.data_dir={root / 'data'}", "eval.batch_size=4", *overrides])
    tf.random.set_seed(0)
    model = build_model(cfg.model)
    for i, nd in enumerate(boxes_per_location(cfg.model)):
        for head in ("loc", "conf"):
            layer = model.get_layer(f"{head}.{i}")
            layer.set_weights(head_weights(*layer.get_weights(), i, nd, head))
    ckpt = root / ckpt_name
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(ckpt), max_to_keep=1).save()
    config.write_config(cfg, str(ckpt))
    return ckpt, root / "data"


def evaluate(model, cfg, out_json=None):
    """One process's evaluation of a Keras model, as `python -m ssd.evaluate --checkpoint` runs it."""
    return Evaluator(detector(model, cfg, default_boxes(cfg.model)), cfg, 0, 1).evaluate(out_json)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return write_setup(tmp_path_factory.mktemp("eval"))


def _direct_pycocotools(gt_json, det_json):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(gt_json))
    evaluator = COCOeval(gt, gt.loadRes(str(det_json)), iouType="bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def test_one_rank_without_horovod(setup, tmp_path, capsys):
    ckpt, data = setup
    cfg = config.apply_overrides(config.read_config(str(ckpt / "config.json")), ["eval.backend=pycocotools"])
    model = restore_model(str(ckpt), cfg)
    result = evaluate(model, cfg, out_json=str(tmp_path / "d.json"))
    printed = capsys.readouterr().out
    assert all(name in printed for name in coco_eval.STAT_NAMES)
    assert result["num_images"] == NUM_VAL and len(result["stats"]) == 12 and result["map"] == result["stats"][0]
    records = json.loads((tmp_path / "d.json").read_text())
    assert len(records) == result["num_detections"] > 0
    gt = json.loads((data / "val" / "instances.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    assert {r["image_id"] for r in records} <= set(sizes)
    assert {r["category_id"] for r in records} <= {c["id"] for c in gt["categories"]}  # COCO ids 3, 7, 12
    per_image = np.bincount([list(sizes).index(r["image_id"]) for r in records])
    assert per_image.max() <= cfg.eval.max_detections
    # The score is what pycocotools gives on the written file.
    direct = _direct_pycocotools(data / "val" / "instances.json", tmp_path / "d.json")
    np.testing.assert_array_equal(result["stats"], direct)
    # faster-coco-eval (the default) on the same detections: the same 12 numbers (see test_coco_eval.py).
    cfg.eval.backend = "faster_coco_eval"
    fast = evaluate(model, cfg)
    np.testing.assert_allclose(fast["stats"], result["stats"], rtol=0, atol=1e-15)


def test_xla_detector_is_traced_once_and_detects_as_without(setup):
    """train.xla compiles the detector (model and post-processing) with XLA: one trace for any batch."""
    ckpt, _ = setup
    cfg = config.read_config(str(ckpt / "config.json"))
    model = restore_model(str(ckpt), cfg)
    plain = detector(model, cfg, default_boxes(cfg.model))
    cfg.train.xla = True
    xla = detector(model, cfg, default_boxes(cfg.model))
    for batch in (2, 3):
        images = tf.random.stateless_normal([batch, 300, 300, 3], seed=[batch, 7])
        a, b = xla(images), plain(images)
        np.testing.assert_array_equal(a["num"].numpy(), b["num"].numpy())
        # XLA fuses the float32 ops differently: near-tied detections may swap places.
        np.testing.assert_allclose(a["scores"].numpy(), b["scores"].numpy(), rtol=1e-4, atol=1e-6)
        same = a["classes"].numpy() == b["classes"].numpy()
        assert same.mean() > 0.95
        np.testing.assert_allclose(a["boxes"].numpy()[same], b["boxes"].numpy()[same], rtol=1e-3, atol=1e-4)
    assert xla.experimental_get_tracing_count() == plain.experimental_get_tracing_count() == 1


def _run_ranks(hvd_launch, setup, out_dir, np_, launcher, *overrides, check=True):
    ckpt, data = setup
    out_dir.mkdir()
    proc = hvd_launch(["tests/ranks_evaluate.py", str(ckpt), str(out_dir), f"data.data_dir={data}", *overrides],
                      np=np_, launcher=launcher, timeout=300, check=False)
    files = [out_dir / f"rank{r}.json" for r in range(np_)]
    ranks = [json.loads(f.read_text()) if f.is_file() else None for f in files]
    if check and proc.returncode != 0:
        pytest.fail(f"ranks_evaluate.py on {np_} rank(s) exited {proc.returncode}: {ranks}\n{proc.stdout[-4000:]}")
    return proc, ranks


def test_two_ranks_give_the_one_rank_stats_and_detections(hvd_launch, setup, tmp_path):
    ckpt, data = setup
    # One rank: the CLI, as a user runs it.
    proc = hvd_launch(["-m", "ssd.evaluate", "--checkpoint", str(ckpt), "--out", str(tmp_path / "one.json"),
                       f"data.data_dir={data}", "eval.backend=pycocotools"], launcher="single", timeout=300)
    assert all(name in proc.stdout for name in coco_eval.STAT_NAMES)
    one_stats = _direct_pycocotools(data / "val" / "instances.json", tmp_path / "one.json")
    assert f"mAP {one_stats[0]:.4f}; wrote {tmp_path / 'one.json'}" in proc.stdout
    # Two real Horovod ranks.
    _, two = _run_ranks(hvd_launch, setup, tmp_path / "two", 2, "gloo", "eval.backend=pycocotools")
    assert [r["num_ranks"] for r in two] == [2, 2] and two[0]["num_images"] == NUM_VAL
    for rank in two:  # the broadcast: every rank returns rank 0's result
        assert rank["stats"] == two[0]["stats"] and rank["num_detections"] == two[0]["num_detections"]
    assert two[0]["stats"] == one_stats.tolist()
    one_dets = json.loads((tmp_path / "one.json").read_text())
    two_dets = json.loads((tmp_path / "two" / "detections.json").read_text())
    assert len(one_dets) == len(two_dets) == two[0]["num_detections"]
    for a, b in zip(one_dets, two_dets):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        np.testing.assert_allclose(a["bbox"] + [a["score"]], b["bbox"] + [b["score"]], rtol=1e-5, atol=1e-4)


def _break_ground_truth(setup, tmp_path):
    """A copy of the data whose instances.json lists one image more than the TFRecords hold."""
    _, data = setup
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    gt = json.loads((broken / "val" / "instances.json").read_text())
    gt["images"].append(dict(gt["images"][0], id=999_999_999))
    (broken / "val" / "instances.json").write_text(json.dumps(gt))
    return broken


def test_image_set_differing_from_the_annotation_file_fails_loudly(setup, tmp_path):
    ckpt, _ = setup
    broken = _break_ground_truth(setup, tmp_path)
    cfg = config.apply_overrides(config.read_config(str(ckpt / "config.json")), [f"data.data_dir={broken}"])
    model = restore_model(str(ckpt), cfg)
    with pytest.raises(ValueError, match=r"instances.json .*1 missing \(e.g. \[999999999\]\)"):
        evaluate(model, cfg)


def test_failure_on_rank_0_stops_every_rank(hvd_launch, setup, tmp_path):
    broken = _break_ground_truth(setup, tmp_path)
    proc, ranks = _run_ranks(hvd_launch, setup, tmp_path / "out", 2, "gloo", f"data.data_dir={broken}", check=False)
    assert proc.returncode != 0
    assert ranks[0]["error"].startswith("ValueError") and "1 missing" in ranks[0]["error"]
    assert ranks[1]["error"] == "RuntimeError: evaluation failed on rank 0 (see its error)"


def test_cli_without_a_checkpoint_names_the_directory(hvd_launch, tmp_path):
    proc = hvd_launch(["-m", "ssd.evaluate", "--checkpoint", str(tmp_path)], launcher="single", timeout=120,
                      check=False)
    assert proc.returncode != 0 and f"ssd.evaluate: {tmp_path}: no checkpoint there" in proc.stdout


def test_imported_reference_weights_score_as_the_pytorch_reference_pipeline(setup, tmp_path):
    """A PyTorch reference state dict, imported (ssd.import_weights) and evaluated here, scores what
    the reference's own pipeline scores: its forward pass, `scale_back_batch` decoding, its
    `decode_single` loop (tests/test_postprocess.py) and its COCO records (original pixels)."""
    torch = require_module("torch")
    from ssd import import_weights
    from ssd.data import pipeline
    from test_postprocess import reference_decode_single
    from torch_reference import SSDR34, randomize

    ckpt, data = setup
    cfg = config.read_config(str(ckpt / "config.json"))
    m = cfg.model
    torch_model = randomize(SSDR34(m.num_classes, m.strides, width=m.width_multiplier), seed=3)
    with torch.no_grad():
        for i, nd in enumerate(boxes_per_location(m)):
            for head in ("loc", "conf"):
                conv = getattr(torch_model, head)[i]
                kernel, bias = head_weights(conv.weight.numpy(), conv.bias.numpy(), i, nd, head)
                conv.weight.copy_(torch.from_numpy(kernel))
                conv.bias.copy_(torch.from_numpy(bias))
    torch.save(torch_model.state_dict(), tmp_path / "reference.pth")
    import_weights.import_weights("reference", str(tmp_path / "reference.pth"), str(tmp_path / "imported"), cfg)
    anchors = default_boxes(m)
    ours = evaluate(restore_model(str(tmp_path / "imported"), cfg), cfg, out_json=str(tmp_path / "ours.json"))

    category_ids = read_manifest(str(data / "val"))["category_ids"]
    records = []
    for batch in pipeline.eval_dataset(cfg, 0, 1):
        with torch.no_grad():
            nchw = np.ascontiguousarray(np.transpose(batch["image"].numpy(), [0, 3, 1, 2]))
            _, locs, confs = torch_model(torch.from_numpy(nchw))
        for i in np.nonzero(batch["valid"].numpy())[0]:
            loc = locs[i].numpy().T.astype(np.float64)  # [n, 4]
            xy = loc[:, :2] * m.box_variances[0] * anchors[:, 2:] + anchors[:, :2]
            wh = np.exp(loc[:, 2:] * m.box_variances[1]) * anchors[:, 2:]
            boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
            probs = torch.softmax(confs[i].T, dim=-1).numpy()
            h, w = batch["orig_size"].numpy()[i]
            for score, label, (left, t, r, b) in reference_decode_single(boxes, probs, 0.05, 0.5, 200, 200):
                records.append({"image_id": int(batch["image_id"].numpy()[i]), "category_id": category_ids[label - 1],
                                "bbox": [left * w, t * h, (r - left) * w, (b - t) * h], "score": float(score)})
    (tmp_path / "reference.json").write_text(json.dumps(records))
    reference = _direct_pycocotools(data / "val" / "instances.json", tmp_path / "reference.json")
    assert reference[8] > 0  # something found: AR@100
    # The weak detector's scores hold near-ties (equal to float32 rounding), which TensorFlow and
    # PyTorch may order differently: equal stats up to such swaps, and per image the same scores.
    np.testing.assert_allclose(ours["stats"], reference, rtol=0, atol=1e-4)
    ours_records = json.loads((tmp_path / "ours.json").read_text())
    assert len(ours_records) == len(records)
    for image_id in {r["image_id"] for r in records}:
        a = sorted(r["score"] for r in ours_records if r["image_id"] == image_id)
        b = sorted(r["score"] for r in records if r["image_id"] == image_id)
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
