"""The run directory's pictures: training curves, and val images with true and predicted boxes.

    python -m ssd.plots RUN_DIR

writes RUN_DIR/training_curves.png (loss and mAP against epoch, with the target line) from
RUN_DIR/metrics.json, and RUN_DIR/predictions.png (a few val images, ground truth in green,
detections in red with class and score) from RUN_DIR/detections.json and the val TFRecords.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ssd import cli  # noqa: E402


def plot_training_curves(epochs: list[dict], target_map: float, out_png: str) -> None:
    """epochs: [{"epoch": int, "loss": float, "map": float | None}, ...] in epoch order."""
    fig, loss_ax = plt.subplots(figsize=(7, 4), dpi=100)
    x = [e["epoch"] for e in epochs]
    loss_ax.plot(x, [e["loss"] for e in epochs], "o-", color="tab:blue", label="training loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (epoch mean)", color="tab:blue")
    map_ax = loss_ax.twinx()
    evals = [(e["epoch"], e["map"]) for e in epochs if e.get("map") is not None]
    if evals:
        map_ax.plot(*zip(*evals), "s-", color="tab:red", label="COCO mAP")
    map_ax.axhline(target_map, color="tab:red", linestyle="--", linewidth=1, label=f"target {target_map}")
    map_ax.set_ylabel("COCO box mAP@[.5:.95]", color="tab:red")
    map_ax.set_ylim(0, 1.1 * max([target_map * 1.5] + [m for _, m in evals]))
    loss_ax.xaxis.get_major_locator().set_params(integer=True)
    lines = loss_ax.get_legend_handles_labels()[0] + map_ax.get_legend_handles_labels()[0]
    loss_ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def plot_predictions(images: list[np.ndarray], truths: list[list[dict]], detections: list[list[dict]],
                     names: dict[int, str], out_png: str, min_score: float = 0.3) -> None:
    """Draws each image with its boxes: truths green, detections (score >= min_score) red.

    images: HxWx3 uint8 RGB at original size; truths/detections: COCO records per image
    ({"bbox": [x, y, w, h] pixels, "category_id", and "score" for detections}); names: id -> name.
    """
    cols = min(len(images), 3)
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, truth, dets in zip(axes.flat, images, truths, detections):
        ax.imshow(image)
        for rec in truth:
            x, y, w, h = rec["bbox"]
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, edgecolor="lime", linewidth=2))
        for rec in dets:
            if rec["score"] < min_score:
                continue
            x, y, w, h = rec["bbox"]
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, edgecolor="red", linewidth=1.5))
            ax.text(x, y, f"{names.get(rec['category_id'], rec['category_id'])} {rec['score']:.2f}",
                    color="white", fontsize=7, va="bottom", bbox=dict(facecolor="red", alpha=0.7, pad=1, lw=0))
    fig.suptitle(f"green: ground truth, red: detections (score >= {min_score:.2f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


def _val_images(val_dir: str, count: int) -> list[tuple[int, np.ndarray]]:
    """The first `count` records of the val TFRecords: [(image_id, HxWx3 uint8 RGB)]."""
    import tensorflow as tf

    from ssd.data import records
    from ssd.data.manifest import read_manifest
    from ssd.data.pipeline import decode_image

    out = []
    for serialized in tf.data.TFRecordDataset(read_manifest(val_dir)["paths"]).take(count):
        parsed = records.parse(serialized)
        out.append((int(parsed["image_id"]), decode_image(parsed["jpeg"]).numpy()))
    return out


def render_run(run_dir: str, num_images: int = 6) -> list[str]:
    """Writes the run directory's two PNGs; returns their paths."""
    from ssd.config import read_config

    cfg = read_config(os.path.join(run_dir, "config.json"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    curves = os.path.join(run_dir, "training_curves.png")
    plot_training_curves(metrics["epochs"], cfg.eval.target_map, curves)
    written = [curves]

    detections_path = os.path.join(run_dir, "detections.json")
    if os.path.exists(detections_path):
        val_dir = os.path.join(cfg.data.data_dir, "val")
        with open(os.path.join(val_dir, "instances.json")) as f:
            truth = json.load(f)
        with open(detections_path) as f:
            detections = json.load(f)
        images = _val_images(val_dir, num_images)
        by_image = lambda recs, i: [r for r in recs if r["image_id"] == i and not r.get("iscrowd", 0)]  # noqa: E731
        predictions = os.path.join(run_dir, "predictions.png")
        plot_predictions([image for _, image in images], [by_image(truth["annotations"], i) for i, _ in images],
                         [by_image(detections, i) for i, _ in images],
                         {c["id"]: c["name"] for c in truth["categories"]}, predictions)
        written.append(predictions)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.plots", __doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=6, help="val images in predictions.png (default 6)")
    args = parser.parse_args(argv)
    try:
        paths = render_run(args.run_dir, args.images)
    except FileNotFoundError as err:  # the run's config.json or metrics.json, the val manifest or shards
        parser.fail(str(err))
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
