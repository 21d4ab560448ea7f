"""Export a checkpoint for inference: SavedModel and frozen GraphDef, in NHWC and in NCHW.

    python -m ssd.export --checkpoint DIR --out EXPORT_DIR [section.key=value ...]

The model and the in-graph post-processing behind one input, `image`, with the MLPerf inference
harness's output names; the frozen graph is the file that harness loads. `detection_bboxes` is in the
harness's box order, (ymin, xmin, ymax, xmax) normalised to the input (its PostProcessCocoTf reads
boxes so), not the evaluator's xyxy: the same numbers, permuted, not clipped (the evaluator does not
clip either). The NCHW export builds the model channels_first, so its convolutions run in NCHW (the
layout GPUs prefer). Files and outputs: docs/interfaces.md.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2_as_graph

from ssd import cli, config
from ssd.anchors import default_boxes
from ssd.box_ops import swap_xy
from ssd.model import reference_layout
from ssd.postprocess import postprocess

OUTPUTS = ("detection_bboxes", "detection_scores", "detection_classes", "py_location_pred", "py_cls_pred")
FORMATS = {"nhwc": "channels_last", "nchw": "channels_first"}
class InferenceModule(tf.Module):
    """The model and the post-processing behind one input signature: `serve(image)` -> OUTPUTS dict."""

    def __init__(self, model, cfg: config.Config, layout: str):
        super().__init__()
        self.model = model
        size = cfg.model.image_size
        shape = [None, size, size, 3] if layout == "nhwc" else [None, 3, size, size]
        anchors = default_boxes(cfg.model)

        def serve(image):
            images = image if layout == "nhwc" else tf.transpose(image, [0, 2, 3, 1])
            loc, logits = self.model(images, training=False)
            det = postprocess(loc, logits, anchors, cfg)
            py_location_pred, py_cls_pred = reference_layout(loc, logits)
            values = (swap_xy(det["boxes"]), det["scores"], det["classes"], py_location_pred, py_cls_pred)
            return {name: tf.identity(v, name=name) for name, v in zip(OUTPUTS, values)}

        self.serve = tf.function(serve, input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])


def export(checkpoint_dir: str, cfg: config.Config, out_dir: str) -> dict[str, str]:
    """Writes the four exports of checkpoint_dir (docs/interfaces.md); returns their paths."""
    from ssd.checkpoint import restore_model

    os.makedirs(out_dir, exist_ok=True)
    config.write_config(cfg, out_dir)
    paths = {}
    for layout, data_format in FORMATS.items():
        layout_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, data_format=data_format))
        module = InferenceModule(restore_model(checkpoint_dir, layout_cfg), layout_cfg, layout)
        saved = os.path.join(out_dir, f"saved_model_{layout}")
        tf.saved_model.save(module, saved, signatures={"serving_default": module.serve})
        config.write_config(layout_cfg, saved)
        # The converted GraphDef itself (variables as constants, the NMS while loop lowered to TF1
        # Enter/Merge/Switch/NextIteration/Exit; one Placeholder, `image`), not the graph of the
        # function it is wrapped back into: that copy (tensorflow/python/eager/lift_to_graph.py)
        # puts a Placeholder `unused_control_flow_input_*` on every loop back edge it meets before
        # the edge's source, rewires the edge, and leaves those placeholders in the graph.
        _, graph_def = convert_variables_to_constants_v2_as_graph(module.serve.get_concrete_function())
        pb = os.path.join(out_dir, f"frozen_{layout}.pb")
        with open(pb, "wb") as f:
            f.write(graph_def.SerializeToString())
        paths[f"saved_model_{layout}"], paths[f"frozen_{layout}"] = saved, pb
    return paths


def run_frozen_graph(path: str, images, outputs=OUTPUTS) -> dict:
    """Runs a frozen GraphDef from `export` as the MLPerf inference harness runs a .pb: imported into a
    TF1 graph, in a tf.compat.v1.Session, `image:0` fed, `<name>:0` fetched. images: a numpy batch in
    the export's layout. Returns {name: numpy array} for the names in `outputs`."""
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run({name: f"{name}:0" for name in outputs}, {"image:0": images})


def main(argv: list[str] | None = None) -> None:
    from ssd.evaluate import model_dir_config

    parser = cli.Parser("ssd.export", __doc__)
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (or prefix) of a model")
    parser.add_argument("--out", required=True, help="export directory")
    config.add_config_args(parser)
    args = parser.parse_args(argv)
    cfg = model_dir_config(args.checkpoint, parser, args)
    try:
        paths = export(args.checkpoint, cfg, args.out)
    except FileNotFoundError as err:
        parser.fail(str(err))
    for name, path in paths.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
