"""python -m ssd.data.prepare: counts on coco128, the record round trip, and every kind of bad input."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ssd.data import prepare, records, synthetic
from ssd.data.manifest import read_manifest


def _read_all(out):
    manifest = read_manifest(str(out))
    return manifest, [records.parse(s) for s in tf.data.TFRecordDataset(manifest["paths"])]


def test_coco128_train_and_val(coco128, tmp_path):
    train = prepare.prepare(str(coco128 / "train2017"), str(coco128 / "annotations" / "instances_train2017.json"),
                            "train", str(tmp_path / "train"), num_shards=4, workers=2)
    assert train["num_records"] == 126 and len(train["shards"]) == 4
    assert sum(s["num_records"] for s in train["shards"]) == 126
    assert train["skipped_by_reason"] == {"no annotations (train keeps annotated images only)": 2}
    assert train["counts"]["crowd_boxes"] == 10 and train["counts"]["grayscale"] == 1
    assert len(train["category_ids"]) == 80 and train["category_ids"][-1] == 90
    val = prepare.prepare(str(coco128 / "train2017"), str(coco128 / "annotations" / "instances_train2017.json"),
                          "val", str(tmp_path / "val"), workers=1)
    assert val["num_records"] == 128 and val["skipped"] == []
    with open(tmp_path / "val" / "instances.json") as f:
        gt = json.load(f)
    assert len(gt["images"]) == 128 and len(gt["annotations"]) == 939

    with open(coco128 / "annotations" / "instances_train2017.json") as f:
        source = json.load(f)
    anns = {}
    for a in source["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    images = {im["id"]: im for im in source["images"]}
    manifest, parsed = _read_all(tmp_path / "train")
    assert sorted(int(r["image_id"]) for r in parsed) == sorted(anns)
    for r in parsed:
        image_id = int(r["image_id"])
        im = images[image_id]
        # The original JPEG bytes, unchanged.
        assert r["jpeg"].numpy() == (coco128 / "train2017" / im["file_name"]).read_bytes()
        expect = np.array([[a["bbox"][0] / im["width"], a["bbox"][1] / im["height"],
                            (a["bbox"][0] + a["bbox"][2]) / im["width"], (a["bbox"][1] + a["bbox"][3]) / im["height"]]
                           for a in anns[image_id]])
        np.testing.assert_allclose(r["boxes"].numpy(), expect, atol=1e-6)
        # Labels map back to the COCO category ids through the manifest.
        ids = [manifest["category_ids"][label - 1] for label in r["labels"].numpy()]
        assert ids == [a["category_id"] for a in anns[image_id]]
        assert list(r["crowd"].numpy()) == [bool(a["iscrowd"]) for a in anns[image_id]]
        assert (int(r["height"]), int(r["width"])) == (im["height"], im["width"])


@pytest.fixture
def bad_coco(tmp_path):
    """A generated COCO dir with one broken thing per image or annotation."""
    root = tmp_path / "coco"
    synthetic.write_split(str(root), "train2017", 9, seed=3, workers=1)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    files = {im["id"]: root / "train2017" / im["file_name"] for im in data["images"]}
    ids = sorted(files)
    files[ids[0]].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)  # corrupt
    raw = files[ids[1]].read_bytes()
    files[ids[1]].write_bytes(raw[: len(raw) // 2])  # truncated
    Image.open(files[ids[2]]).save(files[ids[2]], format="PNG")  # PNG named .jpg
    Image.open(files[ids[3]]).convert("CMYK").save(files[ids[3]], format="JPEG")  # CMYK JPEG
    Image.open(files[ids[4]]).convert("L").save(files[ids[4]], format="JPEG")  # grayscale
    files[ids[5]].unlink()  # missing file
    im6 = next(im for im in data["images"] if im["id"] == ids[6])
    extra = [
        {"id": 9001, "image_id": ids[6], "category_id": 3, "bbox": [10, 10, 0, 20], "iscrowd": 0, "area": 0},
        {"id": 9002, "image_id": ids[6], "category_id": 3, "bbox": [im6["width"] + 5, 10, 20, 20], "iscrowd": 0,
         "area": 1},
        {"id": 9003, "image_id": ids[6], "category_id": 3, "bbox": [-10, -10, 40, 30], "iscrowd": 0, "area": 1},
        {"id": 9004, "image_id": 424242, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0, "area": 1},
        {"id": 9005, "image_id": ids[7], "category_id": 99, "bbox": [1, 1, 5, 5], "iscrowd": 0, "area": 1},
        {"id": 9006, "image_id": ids[7], "category_id": 7, "bbox": [1, 1, 30, 30], "iscrowd": 1, "area": 1},
    ]
    data["annotations"] += extra
    path.write_text(json.dumps(data))
    return root, ids, im6


def test_bad_input_is_skipped_counted_and_reported(bad_coco, tmp_path, capsys):
    root, ids, im6 = bad_coco
    out = tmp_path / "out"
    prepare.main(["--coco-dir", str(root), "--split", "val", "--image-set", "train2017", "--out", str(out),
                  "--workers", "1"])
    printed = capsys.readouterr().out
    manifest, parsed = _read_all(out)
    by_image = {s.get("image_id"): s for s in manifest["skipped"] if "annotation_id" not in s}
    assert by_image[ids[0]]["reason"].startswith("corrupt or truncated image")
    assert by_image[ids[1]]["reason"].startswith("corrupt or truncated image")
    assert by_image[ids[5]]["reason"] == "missing image file"
    assert by_image[ids[0]]["file"].endswith(f"{ids[0]:012d}.jpg")
    by_ann = {s["annotation_id"]: s["reason"] for s in manifest["skipped"] if "annotation_id" in s}
    assert by_ann == {9001: "box with zero width or height", 9002: "box outside the image",
                      9004: "annotation for a missing image", 9005: "unknown category id"}
    assert manifest["counts"]["boxes_clipped"] == 1
    assert manifest["counts"]["reencoded"] == 2 and manifest["counts"]["grayscale"] == 1
    assert {n["image_id"] for n in manifest["notes"]} == {ids[2], ids[3]}
    assert manifest["num_records"] == 9 - 3
    assert "corrupt or truncated image" in printed and "unknown category id" in printed
    # Everything written decodes to 3 channels with TensorFlow; the grayscale file is kept as is.
    for r in parsed:
        assert tf.io.decode_jpeg(r["jpeg"], channels=3).shape[-1] == 3
    gray = next(r for r in parsed if int(r["image_id"]) == ids[4])
    assert gray["jpeg"].numpy() == (root / "train2017" / f"{ids[4]:012d}.jpg").read_bytes()
    clipped = next(r for r in parsed if int(r["image_id"]) == ids[6])
    np.testing.assert_allclose(clipped["boxes"].numpy()[-1], [0, 0, 30 / im6["width"], 20 / im6["height"]], atol=1e-6)
    crowd = next(r for r in parsed if int(r["image_id"]) == ids[7])
    assert crowd["crowd"].numpy()[-1] and not crowd["crowd"].numpy()[0]
    # The evaluation ground truth holds exactly the written images, without the unknown category.
    gt = json.loads((out / "instances.json").read_text())
    assert sorted(im["id"] for im in gt["images"]) == sorted(int(r["image_id"]) for r in parsed)
    assert all(a["category_id"] != 99 for a in gt["annotations"])


def test_malformed_json_names_the_file(tmp_path, capsys):
    root = tmp_path / "coco"
    synthetic.write_split(str(root), "val2017", 2, seed=0, workers=1)
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(path.read_text()[:-10])
    with pytest.raises(SystemExit) as end:
        prepare.main(["--coco-dir", str(root), "--split", "val", "--out", str(tmp_path / "out")])
    assert end.value.code == 1
    assert re.match(r"ssd.data.prepare: \S+/instances_val2017.json: malformed JSON at line 1 column \d+: ",
                    capsys.readouterr().err)
    path.write_text('{"images": []}')
    with pytest.raises(prepare.PrepareError, match="not a COCO instances file"):
        prepare.load_instances(str(path))


def test_refuses_to_overwrite_and_clears_an_interrupted_run(tmp_path, capsys):
    root = tmp_path / "coco"
    synthetic.write_split(str(root), "train2017", 6, seed=0, workers=1)
    out = tmp_path / "out"
    out.mkdir()
    # Leftovers of an interrupted run: a half-written shard and a finished one, no manifest.
    (out / "train-00000-of-00002.tfrecord.tmp").write_bytes(b"half")
    (out / "train-00001-of-00002.tfrecord").write_bytes(b"stale")
    with pytest.raises(FileNotFoundError, match="manifest.json not found"):
        read_manifest(str(out))
    args = ["--coco-dir", str(root), "--split", "train", "--out", str(out), "--shards", "3", "--workers", "1"]
    prepare.main(args)
    shards = [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"] + shards
    with pytest.raises(SystemExit):
        prepare.main(args)
    assert "holds a finished conversion" in capsys.readouterr().err
    prepare.main(args + ["--overwrite"])
    assert _read_all(out)[0]["num_records"] == 6


def test_workers_write_the_same_records(tmp_path):
    root = tmp_path / "coco"
    synthetic.write_split(str(root), "train2017", 8, seed=2, workers=1)
    one = prepare.prepare(str(root / "train2017"), str(root / "annotations" / "instances_train2017.json"), "train",
                          str(tmp_path / "one"), num_shards=2, workers=1)
    two = prepare.prepare(str(root / "train2017"), str(root / "annotations" / "instances_train2017.json"), "train",
                          str(tmp_path / "two"), num_shards=2, workers=2)
    assert one["shards"] == two["shards"]
    for shard in one["shards"]:
        assert (tmp_path / "one" / shard["file"]).read_bytes() == (tmp_path / "two" / shard["file"]).read_bytes()
