"""tf.data input pipelines over the TFRecords of ssd/data/prepare.py: training and evaluation.

Training, one epoch per call of `train_dataset(cfg, anchors, rank, num_ranks, seed, epoch)`:

- Ranks: the shard files are permuted by (seed, epoch), the same permutation on every rank, and
  rank r reads files r, r + R, r + 2R, ... of it, so ranks read disjoint data and a record moves
  between ranks from epoch to epoch. Every rank yields exactly `steps_per_epoch(N, B * R)` batches
  (floor: Horovod collectives need the same number of steps on each rank): a rank drops the rest of
  its records, and in the rare case of fewer records than that (shard sizes differ by one) wraps
  around its own records. Give `prepare --shards` a multiple of the number of ranks.
- Randomness: the file order, the shuffle buffer (`data.shuffle_buffer`) and every example's
  augmentation follow from (seed, epoch, rank) alone; each example gets its own stateless seed
  from its position in the shuffled stream. So the trainer resumes at an epoch boundary exactly by
  calling train_dataset with the same seed and the next epoch number: nothing carries over.
- data.deterministic: ordered interleave and map (parallel still), the same batches for the same
  (seed, epoch, rank); otherwise tf.data may interleave the files' records and finish examples
  in another order for speed: the same augmentations, given to records in another order.
- data.cache (for a train split that fits in memory): the first call in a process decodes every
  record of the split once (each rank all of them, since records move between ranks) and keeps
  them: with augmentation, the decoded images and boxes (a crop is then a slice, bit-identical to
  decoding the window); without, the finished examples (resized, normalised, encoded). Later
  epochs only gather from memory. The records' order, ranks and seeds are those of the uncached
  pipeline (its stream carries record ids in place of records), so the examples are the same.
- Per example, as the reference's SSDTransformer (ssd/data/augment.py): decode only the window of
  the reference's crop sampler (tf.io.decode_and_crop_jpeg, 3 channels, the pixels of PIL's decode
  as in decode_image), crop the boxes, random horizontal flip, bilinear resize to model.image_size
  and torchvision's colour jitter (its four operations in a random order), normalisation, then
  targets by ssd.matching.match onto the default boxes. Jitter and normalisation run at the
  smaller of the crop and the output (colour_and_resize).

Evaluation (`eval_dataset`): every record of the val split decoded, resized and normalised (no
augmentation; the normalisation, too, at the smaller resolution), in the
manifest's order; record i goes to rank i % R; each rank pads its last batch with `valid` False
elements (image zeros, image_id -1) to the same number of batches on every rank, so after
dropping the invalid ones every image is scored exactly once.
"""

import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from ssd.data import augment, records
from ssd.data.manifest import FILE as MANIFEST, read_manifest
from ssd.matching import match


def steps_per_epoch(num_records: int, global_batch: int) -> int:
    """Full global batches per epoch: floor(num_records / global_batch), the same on every rank."""
    return num_records // global_batch


def epoch_seeds(seed: int, epoch: int, rank: int) -> tuple[int, int]:
    """(shuffle seed, augmentation seed) of one rank's epoch, from (seed, epoch, rank) only."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(2)
    return int(state[0] & 0x7FFFFFFF), int(state[1] & 0x7FFFFFFF)


def _normalisation(cfg) -> tuple[tf.Tensor, tf.Tensor]:
    """(scale [3], bias [3]) mapping pixel values 0..255 to (x / 255 - mean) / std."""
    std = np.array(cfg.data.std, np.float32)
    mean = np.array(cfg.data.mean, np.float32)
    return tf.constant(1.0 / (255.0 * std)), tf.constant(-mean / std)


# libjpeg's accurate integer IDCT, PIL's (the reference decodes with PIL): the same pixels.
DCT_METHOD = "INTEGER_ACCURATE"


def decode_image(jpeg: tf.Tensor) -> tf.Tensor:
    """JPEG bytes (scalar string) -> uint8 [h,w,3], the pixels of PIL's Image.open(f).convert("RGB")."""
    return tf.io.decode_jpeg(jpeg, channels=3, dct_method=DCT_METHOD)


def decode_window(parsed: dict, window: tf.Tensor) -> tf.Tensor:
    """The pixel window [4] int32 (top, left, height, width) of a record's image, uint8 [h,w,3]:
    decoded from parsed["jpeg"] (only the window), or sliced from parsed["image"] (data.cache);
    either is the window of decode_image."""
    if "image" in parsed:
        return tf.slice(parsed["image"], tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], 3]))
    return tf.io.decode_and_crop_jpeg(parsed["jpeg"], window, channels=3, dct_method=DCT_METHOD)


def train_example(cfg, anchors: tf.Tensor, parsed: dict, seed: tf.Tensor, encode: bool = True):
    """One parsed record (records.parse) -> (image [S,S,3] float32 normalised, (loc [n,4], cls [n]))
    with encode, else (image, boxes [m,4] xyxy normalised, labels [m], crowd [m]) (for tests).

    Crowd boxes are ordinary boxes (the reference's) unless data.ignore_crowd: then they neither
    constrain the crop nor match.
    """
    d, size = cfg.data, cfg.model.image_size
    boxes, labels, crowd = parsed["boxes"], parsed["labels"], parsed["crowd"]
    height, width = parsed["height"], parsed["width"]
    if not d.ignore_crowd:
        crowd = tf.zeros_like(crowd)
    crop_seed, flip_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if d.augment:
        # Its cap on redraws is hit with probability < 1e-17 (benchmark.input_pipeline counts it).
        crop, _ = augment.sample_crop(tf.boolean_mask(boxes, tf.logical_not(crowd)), crop_seed, d.crop_max_trials)
        window = augment.crop_window(crop, height, width)
        image = decode_window(parsed, window)
        boxes, labels, crowd = augment.crop_boxes(boxes, labels, crowd, crop)
        image, boxes = augment.random_flip(image, boxes, flip_seed)
    else:
        image = decode_image(parsed["jpeg"])
    pixels = tf.cast(image, tf.float32)  # tf.image.resize is faster on float32 than on uint8 input
    scale, bias = _normalisation(cfg)
    if d.augment:
        order, factors = augment.jitter_params(jitter_seed, d.brightness, d.contrast, d.saturation, d.hue)
        colour = lambda x: normalise(augment.color_jitter(x, order, factors), scale, bias)  # noqa: E731
    else:
        colour = lambda x: normalise(x, scale, bias)  # noqa: E731
    image = colour_and_resize(pixels, size, colour)
    if not encode:
        return image, boxes, labels, crowd
    loc, cls = match(boxes, labels, crowd, anchors, cfg.model.box_variances)
    return image, (loc, cls)


def colour_and_resize(pixels: tf.Tensor, size: int, colour) -> tf.Tensor:
    """Bilinear resize of pixels [h,w,3] float32 to [size,size,3] and a per-pixel colour map
    (`colour`), applied at the smaller of the two resolutions. The reference resizes first; the
    orders agree where the map is affine and unclipped (bilinear weights sum to 1) and differ a
    little at edges and saturated pixels; at 1200 px, where COCO images are smaller than the
    output, colour first costs a fifth."""
    shape = tf.shape(pixels)
    image = tf.cond(shape[0] * shape[1] < size * size,
                    lambda: tf.image.resize(colour(pixels), [size, size]),
                    lambda: colour(tf.image.resize(pixels, [size, size])))
    image.set_shape([size, size, 3])
    return image


def normalise(image: tf.Tensor, scale: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """image [H,W,3] float32 0..255 -> image x scale + bias per channel (from _normalisation).

    The per-channel multiply and add are applied to the image viewed as [H, W*3] rows with the [3]
    vectors tiled to [W*3]: TensorFlow's CPU kernels broadcast a long row several times faster than
    a [3] vector.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    rows = tf.reshape(image, [height, width * 3]) * tf.tile(scale, [width]) + tf.tile(bias, [width])
    return tf.reshape(rows, shape)


def _options(deterministic: bool) -> tf.data.Options:
    """The options of the train and eval datasets. tf.data's autotuning model is off: its thread
    sleeps for up to 60 s between optimisations, and destroying an iterator (the end of every epoch
    and evaluation) waited for it, measured at 38 s of one rank's epoch end on the default run while
    the other ranks waited. The AUTOTUNE parallelism and prefetch sizes then keep their defaults
    (the threads of tf.data's pool, a prefetch buffer grown on demand)."""
    options = tf.data.Options()
    options.deterministic = deterministic
    options.autotune.enabled = False
    return options


def train_shards(num_shards: int, rank: int, num_ranks: int, seed: int, epoch: int) -> list[int]:
    """Indices (into the train manifest's `shards`) of the files `rank` reads in `epoch` (1-based):
    files rank, rank + R, ... of a permutation of all files by (seed, epoch), so the ranks' lists
    of one epoch are disjoint and together hold every file."""
    order = np.random.default_rng([seed, epoch]).permutation(num_shards)
    return [int(i) for i in order[rank::num_ranks]]


def train_records(cfg, rank: int, num_ranks: int, seed: int, epoch: int,
                  record_ids: bool = False) -> tuple[tf.data.Dataset, int]:
    """This rank's records of one epoch, shuffled: ((index int64, serialized record) dataset, steps).

    Exactly steps * train.batch_size elements, steps = steps_per_epoch(N, batch_size * num_ranks).
    record_ids: the same stream with each record's id (int64: its position in the manifest's
    shards, shard after shard) in place of the record.
    """
    manifest = read_manifest(os.path.join(cfg.data.data_dir, "train"))
    batch = cfg.train.batch_size
    steps = steps_per_epoch(manifest["num_records"], batch * num_ranks)
    if steps == 0:
        raise ValueError(f"{manifest['num_records']} training records make no global batch of {batch * num_ranks}")
    paths = manifest["paths"]
    if len(paths) < num_ranks:
        raise ValueError(f"{len(paths)} shard files for {num_ranks} ranks: convert with `prepare --shards` >= ranks")
    mine = np.array(train_shards(len(paths), rank, num_ranks, seed, epoch), np.int64)
    shuffle_seed, _ = epoch_seeds(seed, epoch, rank)
    if record_ids:
        counts = np.array([s["num_records"] for s in manifest["shards"]], np.int64)
        ends = np.cumsum(counts)
        ds = tf.data.Dataset.from_tensor_slices((ends[mine] - counts[mine], ends[mine]))
        read = tf.data.Dataset.range  # a shard's ids, in the order its file holds the records
    else:
        ds, read = tf.data.Dataset.from_tensor_slices([paths[i] for i in mine]), tf.data.TFRecordDataset
    ds = ds.interleave(read, cycle_length=min(len(mine), 8), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=cfg.data.deterministic)
    ds = ds.shuffle(cfg.data.shuffle_buffer, seed=shuffle_seed).repeat().take(steps * batch).enumerate()
    return ds, steps


_cache = {}  # data.cache: {"key": what the cached split depends on, "split": its tensors}; one split per process


def cached_split(cfg, anchors) -> dict:
    """The train split decoded in memory (data.cache), made at the first call and kept for the process.

    Tensors indexed by record id (train_records(record_ids=True)). With data.augment: `pixels`
    [N, (h*w*3)] uint8, `boxes` [N, (m), 4], `labels` [N, (m)], `crowd` [N, (m)] (ragged), `height`,
    `width` [N] (see cached_record). Without: the finished examples `images` [N,S,S,3] float32,
    `loc` [N,n,4], `cls` [N,n] int32 (see train_example). Memory: N decoded images, or N examples.
    """
    train_dir = os.path.join(cfg.data.data_dir, "train")
    manifest = read_manifest(train_dir)
    anchors = np.asarray(anchors, np.float32)
    key = json.dumps([os.path.abspath(train_dir), os.stat(os.path.join(train_dir, MANIFEST)).st_mtime_ns,
                      dataclasses.asdict(cfg.data), dataclasses.asdict(cfg.model), hashlib.sha1(anchors).hexdigest()])
    if _cache.get("key") == key:
        return _cache["split"]
    _cache.clear()  # the previous split's memory goes before the next one is made
    ds = tf.data.TFRecordDataset(manifest["paths"])  # in id order
    if cfg.data.augment:
        def decoded(serialized):
            parsed = records.parse(serialized)
            pixels = tf.reshape(decode_image(parsed.pop("jpeg")), [-1])
            return {"pixels": pixels, **parsed}

        split = ds.map(decoded, num_parallel_calls=tf.data.AUTOTUNE).ragged_batch(manifest["num_records"])
        split = split.get_single_element()
    else:
        anchors = tf.constant(anchors)
        no_seed = tf.zeros([2], tf.int64)  # unused without augmentation
        ds = ds.map(lambda s: train_example(cfg, anchors, records.parse(s), no_seed),
                    num_parallel_calls=tf.data.AUTOTUNE)
        images, (loc, cls) = ds.batch(manifest["num_records"]).get_single_element()
        split = {"images": images, "loc": loc, "cls": cls}
    _cache.update(key=key, split=split)
    return split


def cached_record(split: dict, record_id: tf.Tensor) -> dict:
    """One record of a cached_split (with augmentation) as records.parse gives it, but with `image`
    [h,w,3] uint8 (decoded) in place of `jpeg`."""
    record = {k: v[record_id] for k, v in split.items() if k != "pixels"}
    record["image"] = tf.reshape(split["pixels"][record_id], tf.stack([record["height"], record["width"], 3]))
    return record


def train_dataset(cfg, anchors, rank: int, num_ranks: int, seed: int, epoch: int) -> tf.data.Dataset:
    """One epoch of training batches of this rank (see the module docstring).

    Yields (images [B,S,S,3] float32, (loc_targets [B,n,4] float32, cls_targets [B,n] int32)),
    B = train.batch_size, exactly steps_per_epoch(num_records, B * num_ranks) batches.
    """
    split = cached_split(cfg, anchors) if cfg.data.cache else None
    ds, _ = train_records(cfg, rank, num_ranks, seed, epoch, record_ids=split is not None)
    batch, deterministic = cfg.train.batch_size, cfg.data.deterministic
    if split is not None and not cfg.data.augment:
        def examples(_, ids):  # whole batches of finished examples
            return tf.gather(split["images"], ids), (tf.gather(split["loc"], ids), tf.gather(split["cls"], ids))

        ds = ds.batch(batch, drop_remainder=True).map(examples, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(deterministic))
    _, augment_seed = epoch_seeds(seed, epoch, rank)
    anchors = tf.constant(anchors, tf.float32)
    read = records.parse if split is None else lambda record_id: cached_record(split, record_id)

    def example(index, record):
        seed = tf.stack([tf.constant(augment_seed, tf.int64), index])
        return train_example(cfg, anchors, read(record), seed)

    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(deterministic))


def eval_example(cfg, parsed: dict) -> dict:
    """One parsed record -> image [S,S,3] normalised, image_id int64, orig_size [2] int32 (h, w), valid."""
    pixels = tf.cast(decode_image(parsed["jpeg"]), tf.float32)
    scale, bias = _normalisation(cfg)
    image = colour_and_resize(pixels, cfg.model.image_size, lambda x: normalise(x, scale, bias))
    return {"image": image, "image_id": parsed["image_id"],
            "orig_size": tf.stack([parsed["height"], parsed["width"]]), "valid": tf.constant(True)}


def eval_num_batches(num_records: int, num_ranks: int, batch: int) -> int:
    """Batches per rank: enough for the rank with the most records, ceil(ceil(N / R) / B)."""
    return -(-(-(-num_records // num_ranks)) // batch)


def eval_dataset(cfg, rank: int, num_ranks: int) -> tf.data.Dataset:
    """This rank's evaluation batches (see the module docstring): dicts of image [B,S,S,3],
    image_id [B] int64, orig_size [B,2] int32 (height, width), valid [B] bool; B = eval.batch_size."""
    manifest = read_manifest(os.path.join(cfg.data.data_dir, "val"))
    n, batch, size = manifest["num_records"], cfg.eval.batch_size, cfg.model.image_size
    mine = len(range(rank, n, num_ranks))
    padding = eval_num_batches(n, num_ranks, batch) * batch - mine
    pad = {"image": tf.zeros([size, size, 3]), "image_id": tf.constant(-1, tf.int64),
           "orig_size": tf.zeros([2], tf.int32), "valid": tf.constant(False)}
    ds = tf.data.TFRecordDataset(manifest["paths"]).shard(num_ranks, rank)
    ds = ds.map(lambda s: eval_example(cfg, records.parse(s)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat(padding))
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(_options(True))
