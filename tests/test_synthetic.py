"""The generated shapes dataset: COCO layout, deterministic, boxes on the drawn shapes."""

import json

import numpy as np
from PIL import Image

from ssd.data import synthetic


def _load(out, split):
    with open(out / "annotations" / f"instances_{split}.json") as f:
        return json.load(f)


def test_layout_and_coco_format(tmp_path):
    synthetic.main(["--out", str(tmp_path), "--train", "40", "--val", "10", "--workers", "2"])
    train, val = _load(tmp_path, "train2017"), _load(tmp_path, "val2017")
    assert len(train["images"]) == 40 and len(val["images"]) == 10
    ids = [c["id"] for c in train["categories"]]
    assert len(ids) == 3 and ids != list(range(1, 4))  # COCO-style: not 1..K
    assert not {im["id"] for im in train["images"]} & {im["id"] for im in val["images"]}
    per_image = {}
    for ann in train["annotations"]:
        per_image[ann["image_id"]] = per_image.get(ann["image_id"], 0) + 1
        assert ann["category_id"] in ids and ann["iscrowd"] == 0
    assert set(per_image) == {im["id"] for im in train["images"]}
    assert min(per_image.values()) >= 1 and max(per_image.values()) <= 4
    images = {im["id"]: im for im in train["images"]}
    for ann in train["annotations"]:
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        assert 0.14 <= w / min(im["width"], im["height"]) <= 0.61
        with Image.open(tmp_path / "train2017" / im["file_name"]) as f:
            assert f.format == "JPEG" and f.size == (im["width"], im["height"])


def test_deterministic_from_seed_whatever_the_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synthetic.write_split(str(a), "val2017", 12, seed=5, workers=1)
    synthetic.write_split(str(b), "val2017", 12, seed=5, workers=2)
    synthetic.write_split(str(c), "val2017", 12, seed=6, workers=1)
    assert _load(a, "val2017") == _load(b, "val2017")
    for im in _load(a, "val2017")["images"]:
        assert (a / "val2017" / im["file_name"]).read_bytes() == (b / "val2017" / im["file_name"]).read_bytes()
    assert _load(a, "val2017")["annotations"] != _load(c, "val2017")["annotations"]


def test_each_box_holds_its_shape_colour(tmp_path):
    synthetic.write_split(str(tmp_path), "train2017", 30, seed=1, workers=1)
    data = _load(tmp_path, "train2017")
    channel = {3: 0, 7: 1, 12: 2}  # the dominant channel of each class's colour
    last = {}
    for ann in data["annotations"]:
        last[ann["image_id"]] = ann  # drawn last: nothing covers it
    for im in data["images"]:
        ann = last[im["id"]]
        x, y, w, h = ann["bbox"]
        pixels = np.asarray(Image.open(tmp_path / "train2017" / im["file_name"]).convert("RGB"), np.float32)
        centre = pixels[int(y + h / 2), int(x + w / 2)]
        assert np.argmax(centre) == channel[ann["category_id"]], (im["file_name"], ann, centre)
