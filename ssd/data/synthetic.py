"""A generated COCO-format detection dataset of simple shapes, deterministic from a seed.

    python -m ssd.data.synthetic --out data/demo/coco [--train 2000] [--val 200] [--seed 0]

The demo's data: filled circles, squares and triangles, easy to learn, in COCO's layout and format,
so the real converter, pipeline and scorer run on it unchanged. Image i of a split has its own
generator seeded by (seed, split, i), so the output does not depend on the number of workers.
"""

import multiprocessing
import os
import time

import numpy as np
from PIL import Image, ImageDraw

from ssd import cli
from ssd.jsonfile import write_json

# COCO-style category ids: not contiguous, not starting at 1 (the converter maps them to 1..3).
CATEGORIES = [
    {"id": 3, "name": "circle", "supercategory": "shape"},
    {"id": 7, "name": "square", "supercategory": "shape"},
    {"id": 12, "name": "triangle", "supercategory": "shape"},
]
# Base RGB colour per category id; each object varies it by up to +-40 per channel.
_COLOURS = {3: (220, 50, 40), 7: (40, 190, 60), 12: (50, 70, 220)}
_SPLITS = {"train2017": 0, "val2017": 1}
_FIRST_ID = {"train2017": 1, "val2017": 1_000_001}
_MAX_OVERLAP = 0.25


def _overlap(a, b) -> float:
    """Intersection over the smaller area of two [x1, y1, x2, y2] boxes (pixels, inclusive corners):
    bounding it keeps every object mostly visible, even a small one next to a big one."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / min(area(a), area(b))


def _polygon(category_id: int, x1: int, y1: int, x2: int, y2: int) -> list[float]:
    if category_id == 3:
        cx, cy, r = (x1 + x2 + 1) / 2, (y1 + y2 + 1) / 2, (x2 - x1 + 1) / 2
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.round(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).ravel(), 2).tolist()
    if category_id == 7:
        return [x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1, y2 + 1]
    return [(x1 + x2 + 1) / 2, y1, x2 + 1, y2 + 1, x1, y2 + 1]


def draw_image(seed: int, split: str, index: int) -> tuple[Image.Image, list[dict]]:
    """Image `index` of `split`: (RGB image, objects as dicts of category_id, bbox [x, y, w, h], area)."""
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    width, height = (int(v) for v in rng.integers(300, 401, size=2))
    grey = rng.integers(70, 190)
    base = np.clip(grey + rng.integers(-20, 21, size=3), 0, 255)
    pixels = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if rng.random() < 0.5:
        pixels = pixels + rng.normal(0, rng.uniform(5, 25), size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    boxes, objects = [], []
    for _ in range(int(rng.integers(1, 5))):
        category_id = CATEGORIES[int(rng.integers(len(CATEGORIES)))]["id"]
        for _try in range(20):
            side = int(rng.uniform(0.15, 0.6) * min(width, height))
            x1, y1 = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            box = (x1, y1, x1 + side - 1, y1 + side - 1)
            if all(_overlap(box, other) <= _MAX_OVERLAP for other in boxes):
                break
        else:
            continue
        colour = tuple(int(c) for c in np.clip(np.array(_COLOURS[category_id]) + rng.integers(-40, 41, 3), 0, 255))
        if category_id == 3:
            draw.ellipse(box, fill=colour)
            area = np.pi * side * side / 4
        elif category_id == 7:
            draw.rectangle(box, fill=colour)
            area = side * side
        else:
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
            area = side * side / 2
        boxes.append(box)
        objects.append({"category_id": category_id, "bbox": [box[0], box[1], side, side],
                        "area": round(float(area), 2), "segmentation": [_polygon(category_id, *box)]})
    return image, objects


def _write_one(job: tuple[int, str, int, str]) -> tuple[dict, list[dict]]:
    seed, split, index, image_dir = job
    image, objects = draw_image(seed, split, index)
    image_id = _FIRST_ID[split] + index
    file_name = f"{image_id:012d}.jpg"
    image.save(os.path.join(image_dir, file_name), quality=90)
    info = {"id": image_id, "file_name": file_name, "width": image.width, "height": image.height, "license": 1}
    return info, objects


def write_split(out: str, split: str, count: int, seed: int, workers: int) -> str:
    """Writes OUT/<split>/*.jpg and OUT/annotations/instances_<split>.json; returns the JSON path."""
    image_dir = os.path.join(out, split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
    jobs = [(seed, split, i, image_dir) for i in range(count)]
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            results = pool.map(_write_one, jobs, chunksize=64)
    else:
        results = [_write_one(job) for job in jobs]
    images, annotations = [], []
    for info, objects in results:
        images.append(info)
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": info["id"], "iscrowd": 0, **obj})
    data = {
        "info": {"description": f"ssd-large generated shapes, seed {seed}", "version": "1.0"},
        "licenses": [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "categories": CATEGORIES,
        "images": images,
        "annotations": annotations,
    }
    path = os.path.join(out, "annotations", f"instances_{split}.json")
    return write_json(path, data, indent=None)


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.data.synthetic", __doc__)
    parser.add_argument("--out", required=True, help="output directory (COCO layout)")
    parser.add_argument("--train", type=int, default=2000, help="train2017 images (default 2000)")
    parser.add_argument("--val", type=int, default=200, help="val2017 images (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    start = time.time()
    for split, count in (("train2017", args.train), ("val2017", args.val)):
        path = write_split(args.out, split, count, args.seed, args.workers)
        print(f"{split}: {count} images -> {os.path.join(args.out, split)}, {path}")
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
