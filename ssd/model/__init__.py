"""The SSD-ResNet34 model: `build_model(model_cfg)` and the reference output layout."""

from ssd.model.ssd_r34 import build_model, reference_layout

__all__ = ["build_model", "reference_layout"]
