"""The TFRecord format of one image and its boxes: `to_example` (Python, prepare) and `parse` (TF graph).

A record keeps the original JPEG bytes (no re-encoding loss; the pipeline decodes only its crop
window) and boxes normalised to the original image. The features: docs/interfaces.md.
"""

import numpy as np
import tensorflow as tf

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/id": tf.io.FixedLenFeature([], tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "object/bbox": tf.io.VarLenFeature(tf.float32),
    "object/label": tf.io.VarLenFeature(tf.int64),
    "object/crowd": tf.io.VarLenFeature(tf.int64),
}


def to_example(jpeg: bytes, image_id: int, height: int, width: int, boxes_xyxy: np.ndarray,
               labels: np.ndarray, crowd: np.ndarray) -> bytes:
    """Serialises one image: boxes [m,4] xyxy normalised, labels [m] 1..K, crowd [m] bool/0-1."""
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
        "image/id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(image_id)])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(height)])),
        "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(width)])),
        "object/bbox": tf.train.Feature(float_list=tf.train.FloatList(value=boxes.ravel().tolist())),
        "object/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in labels])),
        "object/crowd": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in crowd])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse(serialized: tf.Tensor) -> dict:
    """One serialized record -> dict: `jpeg` string, `image_id` int64, `height`/`width` int32,
    `boxes` [m,4] float32 xyxy normalised, `labels` [m] int32, `crowd` [m] bool."""
    f = tf.io.parse_single_example(serialized, _FEATURES)
    return {
        "jpeg": f["image/encoded"],
        "image_id": f["image/id"],
        "height": tf.cast(f["image/height"], tf.int32),
        "width": tf.cast(f["image/width"], tf.int32),
        "boxes": tf.reshape(tf.sparse.to_dense(f["object/bbox"]), [-1, 4]),
        "labels": tf.cast(tf.sparse.to_dense(f["object/label"]), tf.int32),
        "crowd": tf.sparse.to_dense(f["object/crowd"]) > 0,
    }
