"""Post-processing: SSD head outputs -> at most D scored, labelled boxes per image, in the graph.

The reference rule (MLPerf SSD `decode_single`: decode, softmax, per class the top-k above a score
threshold, greedy NMS, the best D over all classes), batched over images and classes so it runs in
the detector's graph. The reference keeps a box while its IoU with each kept one is < criteria, so
here NMS drops a box at IoU >= eval.nms_iou. Details: docs/interfaces.md.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ssd import box_coder, box_ops
from ssd.config import Config


def greedy_nms(boxes: tf.Tensor, valid: tf.Tensor, iou_threshold: float) -> tf.Tensor:
    """Greedy NMS over candidates already sorted by descending score, for every leading index at once.

    boxes [..., T, 4] xyxy, valid [..., T] bool (candidates that take part) -> keep [..., T] bool.
    Candidate i is kept when it is valid and no kept candidate j < i has IoU(i, j) >= iou_threshold.
    """
    overlaps = box_ops.iou(boxes, boxes) >= iou_threshold  # [..., T, T], symmetric
    num = tf.shape(valid)[-1]

    def step(i, keep):
        # `keep` holds decisions for candidates < i only, so this is "overlaps an earlier kept one".
        suppressed = tf.reduce_any(tf.gather(overlaps, i, axis=-2) & keep, axis=-1)  # [...]
        keep_i = tf.gather(valid, i, axis=-1) & ~suppressed
        return i + 1, keep | (tf.one_hot(i, num, on_value=True, off_value=False) & keep_i[..., None])

    _, keep = tf.while_loop(lambda i, _: i < num, step, (tf.constant(0), tf.zeros_like(valid)))
    return keep


def postprocess(loc: tf.Tensor, logits: tf.Tensor, anchors, cfg: Config) -> dict[str, tf.Tensor]:
    """Detections from the SSD head outputs, per image, best first.

    loc [B, n, 4] box offsets, logits [B, n, C] (class 0 background), anchors [n, 4] cxcywh.
    Returns `boxes` [B, D, 4] float32 xyxy normalised to the network input, `scores` [B, D] float32,
    `classes` [B, D] int32 in 1..C-1, `num` [B] int32; D = cfg.eval.max_detections. Rows from
    `num` on are zero (score 0, class 0, box 0).
    """
    e = cfg.eval
    anchors = tf.convert_to_tensor(np.asarray(anchors, np.float32))
    loc = tf.cast(loc, tf.float32)
    logits = tf.cast(logits, tf.float32)
    batch = tf.shape(logits)[0]
    num_boxes, num_classes = logits.shape[1], logits.shape[2] - 1
    top = min(e.pre_nms_top_k, num_boxes)

    boxes = box_coder.decode(loc, anchors, cfg.model.box_variances)  # [B, n, 4] xyxy
    probs = tf.transpose(tf.nn.softmax(logits, axis=-1)[:, :, 1:], [0, 2, 1])  # [B, K, n]
    cand_scores, cand_index = tf.math.top_k(probs, top)  # [B, K, T], descending
    cand_boxes = tf.gather(boxes, cand_index, batch_dims=1)  # [B, K, T, 4]
    keep = greedy_nms(cand_boxes, cand_scores > e.score_threshold, e.nms_iou)

    # Best D kept candidates over all classes; -1 marks the dropped ones (scores are >= 0).
    flat_scores = tf.reshape(tf.where(keep, cand_scores, -1.0), [batch, num_classes * top])
    out = min(e.max_detections, num_classes * top)
    scores, flat_index = tf.math.top_k(flat_scores, out)  # [B, out]
    found = scores >= 0.0
    boxes_out = tf.gather(tf.reshape(cand_boxes, [batch, num_classes * top, 4]), flat_index, batch_dims=1)
    result = {
        "boxes": tf.where(found[..., None], boxes_out, 0.0),
        "scores": tf.where(found, scores, 0.0),
        "classes": tf.where(found, flat_index // top + 1, 0),
    }
    pad = e.max_detections - out
    result = {k: tf.pad(v, [[0, 0], [0, pad]] + [[0, 0]] * (len(v.shape) - 2)) for k, v in result.items()}
    result["classes"] = tf.cast(result["classes"], tf.int32)
    result["num"] = tf.reduce_sum(tf.cast(found, tf.int32), axis=1)
    return result
