"""Training input pipeline throughput per CPU core, against decode + crop + resize alone.

    python -m benchmark.input_pipeline [--images 1000] [--cores 1] [--out FILE] [--config ssd_large]
        [train.batch_size=8] [data.data_dir=DIR] [key=value ...]

Converts coco128 (real COCO JPEGs in data/coco128, from `ssd/data/download_coco.sh data/coco128 coco128`,
or $SSD_COCO128) to TFRecords in a temporary directory
(or, given data.data_dir=DIR, reads DIR/train from `python -m ssd.data.prepare`), then times, at the
config (default ssd_large: 1200x1200, 15130 default boxes; batch 8 unless overridden), on `--cores`
threads (tf.data private thread pool, one op thread):

- pipeline: `ssd.data.pipeline.train_dataset` as training runs it: decode of the reference's crop
  window, box crop, flip, resize, colour jitter, normalisation, target encoding, batching;
- baseline: the same records and the same crop windows, decode_and_crop_jpeg + resize only, batched.

Each is run for `--images` images (epochs 0, 1, ... of the same seed) after one warm-up batch.
"Per core" is images per CPU-second of this process (all its threads, time.process_time): on a
machine shared with other work it stays meaningful where wall-clock rates do not; the wall-clock
rates are recorded too. Prints both and writes --out (default benchmark/results/input_pipeline.json) with
`images_per_s_per_core`, `baseline_images_per_s_per_core`, their ratio, the share of the
baseline's images that were cropped and how often the crop sampler hit its cap on redraws.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

import ssd  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf

from benchmark import RESULTS, ROOT, save_result
from ssd import cli, config
from ssd.anchors import default_boxes
from ssd.data import augment, pipeline, prepare, records

COCO128 = os.environ.get("SSD_COCO128", os.path.join(ROOT, "data", "coco128"))


def _limit(ds: tf.data.Dataset, cores: int) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def _baseline(cfg, epoch: int, seed: int) -> tf.data.Dataset:
    """decode_and_crop_jpeg of the pipeline's crop window + bilinear resize, batched; nothing else.

    Yields (images, (cropped [B] bool, capped [B] bool)): whether each image was cropped, and whether
    its crop sampler hit the cap on redraws (augment.MAX_CROP_DRAWS)."""
    ds, _ = pipeline.train_records(cfg, 0, 1, seed, epoch)
    _, augment_seed = pipeline.epoch_seeds(seed, epoch, 0)
    d, size = cfg.data, cfg.model.image_size

    def example(index, serialized):
        r = records.parse(serialized)
        crop_seed = tf.random.experimental.stateless_split(tf.stack([tf.constant(augment_seed, tf.int64), index]), 3)[0]
        objects = tf.boolean_mask(r["boxes"], tf.logical_not(r["crowd"] & d.ignore_crowd))
        crop, capped = augment.sample_crop(objects, crop_seed, d.crop_max_trials)
        image = tf.io.decode_and_crop_jpeg(r["jpeg"], augment.crop_window(crop, r["height"], r["width"]), channels=3)
        cropped = tf.reduce_any(tf.not_equal(crop, [0.0, 0.0, 1.0, 1.0]))
        return tf.image.resize(image, [size, size]), (cropped, capped)

    return ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).batch(
        cfg.train.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _time(make, images: int, batch: int, cores: int, inspect=None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, images) to draw `images` images from make(epoch)
    for epochs 0, 1, ... after a warm-up batch; `inspect` (if given) sees each timed batch."""
    epoch, done, start = 0, -1, None
    while done < images:
        for element in _limit(make(epoch), cores):
            if start is None:
                start, cpu, done = time.perf_counter(), time.process_time(), 0
                continue
            if inspect:
                inspect(element)
            done += batch
            if done >= images:
                break
        epoch += 1
    return time.perf_counter() - start, time.process_time() - cpu, done


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("benchmark.input_pipeline", __doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=1, help="threads the pipeline may use")
    parser.add_argument("--out", default=os.path.join(RESULTS, "input_pipeline.json"), help="JSON file")
    config.add_config_args(parser)
    args = parser.parse_args(argv)
    own_data = any(o.startswith("data.data_dir=") for o in args.overrides)
    args.overrides = ["train.batch_size=8", *args.overrides]  # the default batch; the command line's wins
    cfg = config.config_from_args(parser, args)
    if own_data and not os.path.isdir(os.path.join(cfg.data.data_dir, "train")):
        parser.fail(f"{cfg.data.data_dir}/train: no such directory (python -m ssd.data.prepare writes it)")
    annotations = os.path.join(COCO128, "annotations", "instances_train2017.json")
    if not own_data and not os.path.isfile(annotations):
        parser.fail(f"coco128 not found at {COCO128} (set SSD_COCO128, or pass data.data_dir=DIR)")
    tf.config.threading.set_intra_op_parallelism_threads(args.cores)
    tf.config.threading.set_inter_op_parallelism_threads(args.cores)
    with tempfile.TemporaryDirectory() as tmp:
        if not own_data:
            prepare.prepare(os.path.join(COCO128, "train2017"), annotations, "train", os.path.join(tmp, "train"),
                            num_shards=1, workers=1)
            cfg.data.data_dir = tmp
        anchors = default_boxes(cfg.model)
        seed, batch = 0, cfg.train.batch_size
        flags = []  # (cropped, capped) of each baseline image: the same crops as the pipeline's
        base_s, base_cpu, base_n = _time(lambda e: _baseline(cfg, e, seed), args.images, batch, args.cores,
                                         lambda element: flags.extend(zip(*(f.numpy() for f in element[1]))))
        full_s, full_cpu, full_n = _time(lambda e: pipeline.train_dataset(cfg, anchors, 0, 1, seed, e), args.images,
                                         batch, args.cores)
    result = {
        "images_per_s_per_core": full_n / full_cpu,
        "baseline_images_per_s_per_core": base_n / base_cpu,
        "images_per_s": full_n / full_s,
        "baseline_images_per_s": base_n / base_s,
        "pipeline_over_baseline": (full_n / full_cpu) / (base_n / base_cpu),
        "cropped_share": sum(c for c, _ in flags) / len(flags),
        "crop_draws_capped": int(sum(c for _, c in flags)),
        "crop_max_trials": cfg.data.crop_max_trials,
        "per_core_means": "images per CPU-second of the process (time.process_time), all threads",
        "cores": args.cores,
        "images": full_n,
        "batch": batch,
        "image_size": cfg.model.image_size,
        "num_default_boxes": int(len(anchors)),
        "data": cfg.data.data_dir if own_data else "coco128 (train, 126 images)",
        "command": " ".join(["python -m benchmark.input_pipeline", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "tensorflow": tf.__version__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"pipeline (crop, flip, resize, jitter, normalise, encode): {result['images_per_s_per_core']:.1f} images/s "
          f"per core ({result['images_per_s']:.1f} images/s wall clock on {args.cores} threads)")
    print(f"baseline (decode + crop + resize):                        {result['baseline_images_per_s_per_core']:.1f} "
          f"images/s per core ({result['baseline_images_per_s']:.1f} images/s wall clock)")
    print(f"pipeline / baseline: {result['pipeline_over_baseline']:.2f}; cropped {result['cropped_share']:.1%} of the "
          f"baseline's images, crop sampler capped {result['crop_draws_capped']} times")
    save_result(args.out, result)


if __name__ == "__main__":
    main()
