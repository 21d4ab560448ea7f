"""The tf.data pipelines (ssd/data/pipeline.py) on coco128 and generated data."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ssd import box_coder
from ssd.anchors import default_boxes
from ssd.config import load_config
from ssd.data import augment, pipeline, prepare, records, synthetic
from ssd.matching import match
from ssd.data.manifest import read_manifest


@pytest.fixture(scope="module")
def coco128_dir(coco128, tmp_path_factory):
    """coco128 converted: train/ (126 records, 4 shards) and val/ (all 128 images, 2 shards)."""
    out = tmp_path_factory.mktemp("coco128_tfrecords")
    ann = str(coco128 / "annotations" / "instances_train2017.json")
    prepare.prepare(str(coco128 / "train2017"), ann, "train", str(out / "train"), num_shards=4, workers=2)
    prepare.prepare(str(coco128 / "train2017"), ann, "val", str(out / "val"), num_shards=2, workers=2)
    return out


def _cfg(data_dir, *overrides):
    return load_config("demo", [f"data.data_dir={data_dir}", "train.batch_size=4", "eval.batch_size=5", *overrides])


def test_step_counts_by_hand():
    assert pipeline.steps_per_epoch(126, 8) == 15
    assert pipeline.steps_per_epoch(7, 8) == 0
    assert pipeline.eval_num_batches(128, 3, 5) == 9  # ranks hold 43, 43, 42 images
    assert pipeline.eval_num_batches(5000, 8, 32) == 20


def test_train_and_eval_datasets_run_without_the_autotuning_thread(coco128_dir):
    # Destroying an iterator waited for that thread's sleep (up to 60 s): 38 s at one rank's epoch
    # end in a default run (docs/training.md, "Where the time goes").
    cfg = _cfg(coco128_dir)
    train = pipeline.train_dataset(cfg, np.zeros([8, 4], np.float32), 0, 1, seed=1, epoch=1)
    for ds in (train, pipeline.eval_dataset(cfg, 0, 1)):
        assert ds.options().autotune.enabled is False


def _rank_ids(cfg, num_ranks, seed, epoch):
    out = []
    for rank in range(num_ranks):
        ds, steps = pipeline.train_records(cfg, rank, num_ranks, seed, epoch)
        ids = [int(records.parse(s)["image_id"]) for _, s in ds]
        assert len(ids) == steps * cfg.train.batch_size
        out.append(ids)
    return out


def test_train_ranks_are_disjoint_with_equal_steps(coco128_dir):
    cfg = _cfg(coco128_dir, "data.deterministic=true")
    for num_ranks in (1, 2, 3):
        ranks = _rank_ids(cfg, num_ranks, seed=3, epoch=0)
        assert len({len(ids) for ids in ranks}) == 1
        assert len(ranks[0]) == (126 // (4 * num_ranks)) * 4
        for a in range(num_ranks):
            for b in range(a + 1, num_ranks):
                assert not set(ranks[a]) & set(ranks[b])
    one = _rank_ids(cfg, 1, seed=3, epoch=0)[0]
    assert len(set(one)) == len(one)  # one rank, enough records: no repeats
    # Same (seed, epoch): the same stream; the next epoch: another order.
    assert _rank_ids(cfg, 2, seed=3, epoch=0) == _rank_ids(cfg, 2, seed=3, epoch=0)
    assert _rank_ids(cfg, 2, seed=3, epoch=1) != _rank_ids(cfg, 2, seed=3, epoch=0)


def test_deterministic_mode_gives_the_same_batches(coco128_dir):
    cfg = _cfg(coco128_dir, "data.deterministic=true", "model.image_size=160")
    anchors = np.zeros([10, 4], np.float32) + [0.5, 0.5, 0.2, 0.2]

    def first(seed, epoch):
        images, (loc, cls) = next(iter(pipeline.train_dataset(cfg, anchors, 0, 2, seed, epoch)))
        return images.numpy(), loc.numpy(), cls.numpy()

    a, b, c = first(5, 2), first(5, 2), first(6, 2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (4, 160, 160, 3) and a[1].shape == (4, 10, 4) and a[2].dtype == np.int32


def _epochs(cfg, anchors, epochs, num_ranks=2):
    """Every batch of `epochs` on every rank, as numpy (images, loc, cls) triples."""
    return [[tuple(x.numpy() for x in (images, loc, cls))
             for images, (loc, cls) in pipeline.train_dataset(cfg, anchors, rank, num_ranks, 5, epoch)]
            for epoch in epochs for rank in range(num_ranks)]


def _assert_same(a, b):
    assert len(a) == len(b) and all(len(x) == len(y) for x, y in zip(a, b))
    for x, y in zip(a, b):
        for batch_x, batch_y in zip(x, y):
            for u, v in zip(batch_x, batch_y):
                np.testing.assert_array_equal(u, v)


def _record_ids_name_the_records(cfg, rank, num_ranks, seed, epoch):
    """train_records(record_ids=True) is the plain stream with ids: id k is the k-th record of the shards."""
    manifest = read_manifest(str(cfg.data.data_dir) + "/train")
    image_ids = [int(records.parse(s)["image_id"]) for s in tf.data.TFRecordDataset(manifest["paths"])]
    plain, _ = pipeline.train_records(cfg, rank, num_ranks, seed, epoch)
    ids, _ = pipeline.train_records(cfg, rank, num_ranks, seed, epoch, record_ids=True)
    return [int(records.parse(s)["image_id"]) for _, s in plain] == [image_ids[int(k)] for _, k in ids]


@pytest.mark.parametrize("augment", [False, True])
def test_cached_epochs_give_the_examples_of_uncached_ones(coco128_dir, tmp_path, augment):
    """data.cache: the same batches as without it (augmentation off: finished examples are cached;
    on: decoded images, a crop is a slice), and later epochs no longer read the records."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(coco128_dir, data)
    overrides = ["data.deterministic=true", "model.image_size=96", f"data.augment={augment}"]
    cfg, cached = _cfg(data, *overrides), _cfg(data, *overrides, "data.cache=true")
    assert _record_ids_name_the_records(cfg, 1, 2, seed=5, epoch=2)
    anchors = np.array([[0.5, 0.5, 0.4, 0.4], [0.25, 0.25, 0.2, 0.3], [0.7, 0.6, 0.5, 0.5]], np.float32)
    plain = _epochs(cfg, anchors, [1, 2])
    _assert_same(_epochs(cached, anchors, [1]), plain[:2])
    split = pipeline.cached_split(cached, anchors)
    assert sorted(split) == (["boxes", "crowd", "height", "image_id", "labels", "pixels", "width"] if augment
                             else ["cls", "images", "loc"])
    for shard in (data / "train").glob("*.tfrecord"):
        shard.write_bytes(b"no longer a record")  # what epoch 2 reads now comes from memory
    _assert_same(_epochs(cached, anchors, [2]), plain[2:])
    assert pipeline.cached_split(cached, anchors) is split
    # Augmentation still draws anew every epoch; without it a record gives the same image every epoch.
    first, second = ({image.tobytes() for batches in ranks for images, _, _ in batches for image in images}
                     for ranks in (plain[:2], plain[2:]))
    assert len(first) == len(second) == 120  # 15 steps of 2 x 4 images, each record once
    assert len(first | second) == (240 if augment else 126)


def test_train_batches_shapes_and_normalisation(coco128_dir):
    cfg = _cfg(coco128_dir)
    anchors = default_boxes(cfg.model)
    ds = pipeline.train_dataset(cfg, anchors, 1, 2, seed=0, epoch=0)
    batches = list(ds)
    assert len(batches) == 126 // 8
    images, (loc, cls) = batches[0]
    assert images.shape == (4, 300, 300, 3) and loc.shape == (4, len(anchors), 4) and cls.shape == (4, len(anchors))
    lo = (0 - np.array(cfg.data.mean)) / np.array(cfg.data.std)
    hi = (1 - np.array(cfg.data.mean)) / np.array(cfg.data.std)
    assert np.all(images.numpy() >= lo - 1e-5) and np.all(images.numpy() <= hi + 1e-5)
    assert np.all((cls.numpy() >= 0) & (cls.numpy() <= 80))
    assert all(np.any(c.numpy() > 0) for _, (_, c) in batches)


def test_normalise_equals_the_plain_steps():
    cfg = load_config("demo")
    pixels = tf.constant(np.random.default_rng(1).uniform(0, 255, size=(6, 5, 3)), tf.float32)
    scale, bias = pipeline._normalisation(cfg)
    plain = (pixels / 255.0 - cfg.data.mean) / cfg.data.std
    np.testing.assert_allclose(pipeline.normalise(pixels, scale, bias).numpy(), plain.numpy(), atol=1e-5)


def test_colour_then_resize_equals_resize_then_colour(coco128):
    cfg = load_config("demo")
    scale, bias = pipeline._normalisation(cfg)
    colour = lambda x: pipeline.normalise(x, scale, bias)  # noqa: E731
    rng = np.random.default_rng(2)
    for shape in ((20, 30, 3), (80, 90, 3)):  # smaller and larger than the 50 x 50 output
        pixels = tf.constant(rng.uniform(0, 255, size=shape), tf.float32)
        out = pipeline.colour_and_resize(pixels, 50, colour).numpy()
        np.testing.assert_allclose(out, colour(tf.image.resize(pixels, [50, 50])).numpy(), atol=1e-4)
        np.testing.assert_allclose(out, tf.image.resize(colour(pixels), [50, 50]).numpy(), atol=1e-4)
    # The colour jitter is not affine (clips, truncation, HSV): jittering coco128 images before the
    # resize to 1200 (as colour_and_resize does), not after it (as the reference does), moves pixels
    # by about half a level of 255 on average, most at the edges of saturated colours. Bound: mean
    # < 1, 99th percentile < 8.
    names = sorted(p.name for p in (coco128 / "train2017").iterdir())[::32]
    errors = []
    for i, name in enumerate(names):
        image = tf.constant(np.asarray(Image.open(coco128 / "train2017" / name).convert("RGB")), tf.float32)
        for k in range(2):
            order, factors = augment.jitter_params(tf.constant([i, k], tf.int64), 0.125, 0.5, 0.5, 0.05)
            jitter = lambda x: augment.color_jitter(x, order, factors)  # noqa: E731
            before = pipeline.colour_and_resize(image, 1200, jitter)
            errors.append(np.abs(before - jitter(tf.image.resize(image, [1200, 1200]))).ravel())
    errors = np.concatenate(errors)
    print(f"jitter before vs after the resize to 1200, {len(names)} images x 2: mean {errors.mean():.2f}, "
          f"p99 {np.percentile(errors, 99):.1f} levels")
    assert errors.mean() < 1.0 and np.percentile(errors, 99) < 8, (errors.mean(), np.percentile(errors, 99))


def test_encoded_targets_decode_back_to_the_boxes(tmp_path):
    root = tmp_path / "coco"
    synthetic.write_split(str(root), "train2017", 6, seed=4, workers=1)
    prepare.prepare(str(root / "train2017"), str(root / "annotations" / "instances_train2017.json"), "train",
                    str(tmp_path / "train"), num_shards=1)
    cfg = _cfg(tmp_path)
    anchors = default_boxes(cfg.model)
    manifest = read_manifest(str(tmp_path / "train"))
    for i, serialized in enumerate(tf.data.TFRecordDataset(manifest["paths"])):
        parsed = records.parse(serialized)
        _, boxes, labels, crowd = pipeline.train_example(cfg, anchors, parsed, tf.constant([9, i], tf.int64),
                                                         encode=False)
        loc, cls = match(boxes, labels, crowd, anchors, cfg.model.box_variances)
        positive = cls.numpy() > 0
        decoded = box_coder.decode(loc, anchors, cfg.model.box_variances).numpy()[positive]
        # Every positive decodes to one of the boxes, with that box's label ...
        dist = np.abs(decoded[:, None, :] - boxes.numpy()[None]).max(-1)
        nearest = dist.argmin(1)
        assert np.all(dist.min(1) < 1e-4)
        assert np.array_equal(labels.numpy()[nearest], cls.numpy()[positive])
        # ... and every box is some positive's target.
        assert set(nearest) == set(range(len(labels)))


def _crowd_records(coco128_dir):
    """The coco128 train records that hold crowd boxes, those boxes' labels replaced by 999."""
    manifest = read_manifest(str(coco128_dir / "train"))
    out = []
    for serialized in tf.data.TFRecordDataset(manifest["paths"]):
        parsed = records.parse(serialized)
        if np.any(parsed["crowd"].numpy()):
            parsed["labels"] = tf.where(parsed["crowd"], 999, parsed["labels"])
            out.append(parsed)
    assert out
    return out


def test_crowd_boxes_train_as_ordinary_boxes_as_in_the_reference(coco128_dir):
    # The reference has no iscrowd filter: crowd boxes constrain the crop and match like any box.
    cfg = _cfg(coco128_dir)
    assert not cfg.data.ignore_crowd and not load_config("ssd_large").data.ignore_crowd
    anchors = default_boxes(cfg.model)
    positives = 0
    for i, parsed in enumerate(_crowd_records(coco128_dir)):
        _, (_, cls) = pipeline.train_example(cfg, anchors, parsed, tf.constant([i, 0], tf.int64))
        positives += int(np.sum(cls.numpy() == 999))
    assert positives > 0
    # A crowd box alone: it is the box every crop must hold the centre of, so crops happen.
    image = tf.io.encode_jpeg(tf.zeros([40, 50, 3], tf.uint8)).numpy()
    parsed = records.parse(records.to_example(image, 1, 40, 50, np.array([[0.2, 0.2, 0.6, 0.7]]), [2], [1]))
    kept = [pipeline.train_example(cfg, anchors, parsed, tf.constant([5, k], tf.int64), encode=False)[1].numpy()
            for k in range(10)]
    assert all(len(b) == 1 for b in kept)
    assert sum(not np.allclose(b[0], [0.2, 0.2, 0.6, 0.7]) and not np.allclose(b[0], [0.4, 0.2, 0.8, 0.7])
               for b in kept) >= 3  # cropped (neither the box nor its mirror image)
    # data.ignore_crowd: crowd boxes neither match nor constrain the crop (a lone one: never cropped).
    ignore = _cfg(coco128_dir, "data.ignore_crowd=true")
    for k in range(6):
        box = pipeline.train_example(ignore, anchors, parsed, tf.constant([5, k], tf.int64), encode=False)[1].numpy()
        assert np.allclose(box, [[0.2, 0.2, 0.6, 0.7]]) or np.allclose(box, [[0.4, 0.2, 0.8, 0.7]])
    for i, parsed in enumerate(_crowd_records(coco128_dir)):
        _, (_, cls) = pipeline.train_example(ignore, anchors, parsed, tf.constant([i, 0], tf.int64))
        assert not np.any(cls.numpy() == 999)


def test_empty_images_are_background(coco128_dir):
    # An image without boxes (e.g. all its annotations dropped) trains as background only.
    cfg = _cfg(coco128_dir)
    anchors = default_boxes(cfg.model)
    image = tf.io.encode_jpeg(tf.zeros([40, 50, 3], tf.uint8)).numpy()
    parsed = records.parse(records.to_example(image, 1, 40, 50, np.zeros([0, 4]), [], []))
    images, (loc, cls) = pipeline.train_example(cfg, anchors, parsed, tf.constant([0, 0], tf.int64))
    assert images.shape == (300, 300, 3) and not np.any(cls.numpy()) and not np.any(loc.numpy())


def test_eval_every_image_exactly_once(coco128_dir):
    cfg = _cfg(coco128_dir)
    manifest = read_manifest(str(coco128_dir / "val"))
    sizes = {}
    for s in tf.data.TFRecordDataset(manifest["paths"]):
        r = records.parse(s)
        sizes[int(r["image_id"])] = [int(r["height"]), int(r["width"])]
    seen, batch_counts = [], []
    for rank in range(3):
        n = 0
        for batch in pipeline.eval_dataset(cfg, rank, 3):
            n += 1
            valid = batch["valid"].numpy()
            assert batch["image"].shape == (5, 300, 300, 3)
            for image_id, size in zip(batch["image_id"].numpy()[valid], batch["orig_size"].numpy()[valid]):
                assert sizes[int(image_id)] == size.tolist()
            seen += batch["image_id"].numpy()[valid].tolist()
            assert np.all(batch["image_id"].numpy()[~valid] == -1)
        batch_counts.append(n)
    assert batch_counts == [9, 9, 9]
    assert sorted(seen) == sorted(sizes) and len(seen) == 128


def test_real_horovod_ranks(coco128_dir, hvd_launch, repo_root, tmp_path):
    out = tmp_path / "ranks.json"
    hvd_launch([str(repo_root / "tests" / "data_ranks.py"), str(coco128_dir), str(out)], np=2, timeout=300)
    result = json.loads(out.read_text())
    assert result["train_steps"] == [15, 15]
    for epoch, (a, b) in result["train"].items():
        assert len(a) == len(b) == 60 and not set(a) & set(b)
    assert result["train"]["0"] != result["train"]["1"]
    assert result["eval_batches"] == [13, 13]
    a, b = result["eval"]
    assert len(a) + len(b) == 128 and len(set(a) | set(b)) == 128
