"""COCO directory (images + instances JSON) -> sharded TFRecords + manifest.

    python -m ssd.data.prepare --coco-dir data/coco --split train|val --out data/coco/tfrecords/<split>

Run once before training: the pipelines then read shards of records instead of a large JSON and
loose files, and all bad COCO input is met here, where it is skipped or repaired and listed in the
manifest, never dropped silently. Layout, image selection and bad-input rules: docs/interfaces.md.
"""

import glob
import io
import json
import math
import multiprocessing
import os
import time

import numpy as np
from PIL import Image

from ssd import cli
from ssd.data.manifest import FILE as MANIFEST, write_manifest
from ssd.jsonfile import write_json

SPLITS = ("train", "val")


class PrepareError(Exception):
    """Bad input that stops the conversion; the message names the file and the record."""


def load_instances(path: str) -> dict:
    """The instances JSON at `path`, checked for the keys the converter needs."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise PrepareError(f"{path}: no such annotation file") from None
    except json.JSONDecodeError as err:
        raise PrepareError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    sections = ("images", "annotations", "categories")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in sections):
        raise PrepareError(f"{path}: not a COCO instances file (needs lists 'images', 'annotations', 'categories')")
    for i, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and all(k in image for k in ("id", "file_name", "height", "width"))):
            raise PrepareError(f"{path}: images[{i}] lacks one of id, file_name, height, width: {str(image)[:200]}")
    for i, cat in enumerate(data["categories"]):
        if not (isinstance(cat, dict) and "id" in cat):
            raise PrepareError(f"{path}: categories[{i}] has no id")
    return data


def _clip_box(bbox, width: int, height: int):
    """COCO [x, y, w, h] pixels -> (xyxy normalised clipped to the image, reason or None, clipped)."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        return None, "malformed bbox", False
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None, "malformed bbox", False
    if w <= 0 or h <= 0:
        return None, "box with zero width or height", False
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
    if x2 <= x1 or y2 <= y1:
        return None, "box outside the image", False
    clipped = (x1, y1, x2, y2) != (x, y, x + w, y + h)
    return [x1 / width, y1 / height, x2 / width, y2 / height], None, clipped


def plan(data: dict, split: str) -> tuple[list[dict], list[dict], dict, list[int]]:
    """Chooses the images and boxes to write.

    Returns (items, skipped, counts, category_ids): items in image-id order, each a dict of
    image_id, file_name, height, width, boxes [m,4] xyxy normalised, labels [m] 1..K, crowd [m];
    skipped: dicts with reason and the record; counts: totals by kind.
    """
    category_ids = sorted(int(c["id"]) for c in data["categories"])
    label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}
    images = {}
    for image in data["images"]:
        images[image["id"]] = image
    objects = {image_id: [] for image_id in images}
    has_annotation = set()
    skipped, counts = [], {"boxes_clipped": 0}
    for ann in data["annotations"]:
        ann_id, image_id = ann.get("id"), ann.get("image_id")
        if image_id not in images:
            skipped.append({"reason": "annotation for a missing image", "annotation_id": ann_id, "image_id": image_id})
            continue
        has_annotation.add(image_id)
        if ann.get("category_id") not in label_of:
            skipped.append({"reason": "unknown category id", "annotation_id": ann_id, "image_id": image_id,
                            "category_id": ann.get("category_id")})
            continue
        image = images[image_id]
        box, reason, clipped = _clip_box(ann.get("bbox"), image["width"], image["height"])
        if reason:
            skipped.append({"reason": reason, "annotation_id": ann_id, "image_id": image_id, "bbox": ann.get("bbox")})
            continue
        counts["boxes_clipped"] += clipped
        objects[image_id].append((box, label_of[ann["category_id"]], bool(ann.get("iscrowd", 0))))
    items = []
    for image_id in sorted(images):
        image = images[image_id]
        if split == "train" and image_id not in has_annotation:
            skipped.append({"reason": "no annotations (train keeps annotated images only)", "image_id": image_id,
                            "file": image["file_name"]})
            continue
        objs = objects[image_id]
        items.append({
            "image_id": image_id, "file_name": image["file_name"], "height": image["height"], "width": image["width"],
            "boxes": np.array([o[0] for o in objs], np.float32).reshape(-1, 4),
            "labels": np.array([o[1] for o in objs], np.int64),
            "crowd": np.array([o[2] for o in objs], np.int64),
        })
    counts["boxes"] = int(sum(len(it["labels"]) for it in items))
    counts["crowd_boxes"] = int(sum(it["crowd"].sum() for it in items))
    return items, skipped, counts, category_ids


def read_jpeg(path: str, height: int, width: int) -> tuple[bytes, str | None]:
    """The JPEG bytes to store for the image at `path`, and a note when it is not stored as is.

    Raises PrepareError (message without the path) for a missing, corrupt or truncated file or a
    size other than the JSON's. RGB and grayscale JPEGs are returned unchanged (note "grayscale" for
    the latter); anything else PIL decodes (PNG, CMYK JPEG, ...) is re-encoded as RGB JPEG.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise PrepareError("missing image file") from None
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            fmt, mode, size = image.format, image.mode, image.size
            if size != (width, height):
                raise PrepareError(f"image is {size[0]}x{size[1]}, the JSON says {width}x{height}")
            if fmt == "JPEG" and mode in ("RGB", "L"):
                return raw, ("grayscale" if mode == "L" else None)
            out = io.BytesIO()
            image.convert("RGB").save(out, format="JPEG", quality=95)
            return out.getvalue(), f"re-encoded to RGB JPEG from {fmt} {mode}"
    except PrepareError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        raise PrepareError(f"corrupt or truncated image ({type(err).__name__}: {err})") from None


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def default_num_shards(num_records: int) -> int:
    """A power of two (divides 2, 4, 8, ... ranks), at least about 64 records a shard, at most 256."""
    return int(min(256, 2 ** max(0, math.floor(math.log2(max(num_records, 1) / 64)))))


def _write_shard(job: tuple) -> dict:
    """Writes one shard under a temporary name, renames it when complete; returns its report."""
    # Imported here, in the worker: the command's main process stays free of TensorFlow, so
    # forking workers from it is safe.
    import tensorflow as tf

    from ssd.data import records

    out, image_dir, name, items = job
    final, tmp = os.path.join(out, name), os.path.join(out, name + ".tmp")
    report = {"file": name, "num_records": 0, "skipped": [], "notes": []}
    with tf.io.TFRecordWriter(tmp) as writer:
        for it in items:
            path = os.path.join(image_dir, it["file_name"])
            try:
                jpeg, note = read_jpeg(path, it["height"], it["width"])
            except PrepareError as err:
                report["skipped"].append({"reason": str(err), "image_id": it["image_id"], "file": path})
                continue
            if note:
                report["notes"].append({"note": note, "image_id": it["image_id"], "file": path})
            writer.write(records.to_example(jpeg, it["image_id"], it["height"], it["width"], it["boxes"],
                                            it["labels"], it["crowd"]))
            report["num_records"] += 1
    os.replace(tmp, final)
    return report


def _clear(out: str, overwrite: bool) -> None:
    manifest = os.path.join(out, MANIFEST)
    if os.path.exists(manifest):
        if not overwrite:
            raise PrepareError(f"{out} holds a finished conversion ({manifest}); pass --overwrite to replace it")
        os.remove(manifest)
    for path in glob.glob(os.path.join(out, "*.tfrecord*")) + glob.glob(os.path.join(out, "instances.json*")):
        os.remove(path)


def prepare(image_dir: str, annotations: str, split: str, out: str, num_shards: int = 0, workers: int = 1,
            overwrite: bool = False) -> dict:
    """Converts one split; returns the manifest (also written to OUT/manifest.json)."""
    if split not in SPLITS:
        raise PrepareError(f"split must be one of {SPLITS}, got {split!r}")
    if not os.path.isdir(image_dir):
        raise PrepareError(f"{image_dir}: no such image directory")
    data = load_instances(annotations)
    os.makedirs(out, exist_ok=True)
    _clear(out, overwrite)
    items, skipped, counts, category_ids = plan(data, split)
    num_shards = num_shards or default_num_shards(len(items))
    if num_shards > max(len(items), 1):
        raise PrepareError(f"{num_shards} shards for {len(items)} images: use at most one shard per image")
    chunks = np.array_split(np.arange(len(items)), num_shards)
    jobs = [(out, image_dir, shard_name(split, i, num_shards), [items[j] for j in chunk])
            for i, chunk in enumerate(chunks)]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            reports = pool.map(_write_shard, jobs, chunksize=1)
    else:
        reports = [_write_shard(job) for job in jobs]
    notes = [n for r in reports for n in r["notes"]]
    skipped += [s for r in reports for s in r["skipped"]]
    bad_images = {s["image_id"] for s in skipped if "file" in s}
    counts.update({
        "images_in_json": len(data["images"]),
        "annotations_in_json": len(data["annotations"]),
        "grayscale": sum(n["note"] == "grayscale" for n in notes),
        "reencoded": sum(n["note"] != "grayscale" for n in notes),
    })
    reasons = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    manifest = {
        "split": split,
        "num_records": sum(r["num_records"] for r in reports),
        "category_ids": category_ids,
        "category_names": {str(c["id"]): c.get("name", "") for c in data["categories"]},
        "shards": [{"file": r["file"], "num_records": r["num_records"]} for r in reports],
        "counts": counts,
        "skipped_by_reason": reasons,
        "skipped": skipped,
        "notes": [n for n in notes if n["note"] != "grayscale"],
        "source": {"images": os.path.abspath(image_dir), "annotations": os.path.abspath(annotations)},
    }
    if split == "val":
        _write_ground_truth(data, items, bad_images, category_ids, os.path.join(out, "instances.json"))
    write_manifest(out, manifest)
    return manifest


def _write_ground_truth(data: dict, items: list[dict], skipped_ids: set, category_ids: list[int], path: str) -> None:
    """The source JSON restricted to the written images and their annotations of known categories."""
    keep = {it["image_id"] for it in items} - skipped_ids
    known = set(category_ids)
    gt = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    gt["images"] = [im for im in data["images"] if im["id"] in keep]
    gt["annotations"] = [a for a in data["annotations"] if a.get("image_id") in keep and a.get("category_id") in known
                         and _clip_box(a.get("bbox"), 1, 1)[1] != "malformed bbox"]
    write_json(path, gt, indent=None)


def report(manifest: dict, out: str, limit: int = 10) -> str:
    """A short human-readable summary of a manifest."""
    lines = [f"{manifest['split']}: {manifest['num_records']} records in {len(manifest['shards'])} shards -> {out}",
             "counts: " + ", ".join(f"{k} {v}" for k, v in manifest["counts"].items())]
    for reason, n in manifest["skipped_by_reason"].items():
        lines.append(f"skipped {n}: {reason}")
    for s in manifest["skipped"][:limit]:
        lines.append(f"  {s}")
    if len(manifest["skipped"]) > limit:
        lines.append(f"  ... {len(manifest['skipped']) - limit} more in {os.path.join(out, MANIFEST)}")
    for n in manifest["notes"][:limit]:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.data.prepare", __doc__)
    parser.add_argument("--coco-dir", required=True, help="holds <image-set>/ and annotations/")
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--out", required=True, help="output directory for this split")
    parser.add_argument("--image-set", default="", help="image folder name (default <split>2017)")
    parser.add_argument("--shards", type=int, default=0, help="number of shards (default: by size, a power of 2)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--overwrite", action="store_true", help="replace a finished conversion in --out")
    args = parser.parse_args(argv)
    image_set = args.image_set or f"{args.split}2017"
    start = time.time()
    try:
        manifest = prepare(os.path.join(args.coco_dir, image_set),
                           os.path.join(args.coco_dir, "annotations", f"instances_{image_set}.json"),
                           args.split, args.out, args.shards, args.workers, args.overwrite)
    except PrepareError as err:
        parser.fail(str(err))
    print(report(manifest, args.out))
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
