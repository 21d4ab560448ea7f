"""The manifest of a converted split, SPLIT_DIR/manifest.json: its records, shards, categories and
what the conversion skipped. `ssd.data.prepare` writes it last, so its presence marks a finished
conversion; everything that reads a split's TFRecords finds them through it."""

import json
import os

from ssd.jsonfile import write_json

FILE = "manifest.json"


def write_manifest(split_dir: str, manifest: dict) -> None:
    """Writes SPLIT_DIR/manifest.json (atomically); `manifest["shards"]` names files in split_dir."""
    write_json(os.path.join(split_dir, FILE), manifest, indent=1)


def read_manifest(split_dir: str) -> dict:
    """The manifest of a finished conversion in split_dir, with `paths` (absolute shard paths) added."""
    path = os.path.join(split_dir, FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: convert the data with `python -m ssd.data.prepare ... --out "
                                f"{split_dir}` (an interrupted conversion leaves no manifest)")
    with open(path) as f:
        manifest = json.load(f)
    manifest["paths"] = [os.path.join(split_dir, s["file"]) for s in manifest["shards"]]
    missing = [p for p in manifest["paths"] if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{path} lists {len(missing)} shard(s) that are missing, e.g. {missing[0]}")
    return manifest
