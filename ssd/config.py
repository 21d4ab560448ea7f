"""The typed run configuration: dataclasses, named presets, `key=value` overrides.

    python -m ssd.config --config ssd_large train.batch_size=16 eval.epochs=40,50

prints the resolved config as JSON. Every entry point parses its arguments with `add_config_args`
and `config_from_args`, so an override means the same thing everywhere. System settings (GPUs,
per-GPU batch, launcher) live in benchmark/configs/config_<SYSTEM>.sh and reach the config as
overrides; the presets hold the hyperparameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import typing
from dataclasses import dataclass, field

from ssd import cli
from ssd.jsonfile import write_json


class ConfigError(ValueError):
    """A bad preset name, override or value; its message is one line meant for the user."""


@dataclass
class ModelConfig:
    image_size: int = 1200  # square input, pixels
    num_classes: int = 81  # including background (index 0)
    width_multiplier: float = 1.0  # scales every conv's channel count; 1.0 is the reference model
    # The reference's `strides`: [box head, class head, conv7, conv8, conv9, conv10].
    strides: tuple[int, ...] = (3, 3, 2, 2, 2, 2)
    # Default-box sizes as fractions of the input, one more than there are feature maps
    # (the reference's [21, 45, 99, 153, 207, 261, 315] px at 300).
    anchor_scales: tuple[float, ...] = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
    # Aspect ratios per feature map, as "2" or "2:3" (each ratio a adds a and 1/a).
    aspect_ratios: tuple[str, ...] = ("2", "2:3", "2:3", "2:3", "2", "2")
    box_variances: tuple[float, float] = (0.1, 0.2)  # (center, size)
    data_format: str = "channels_last"  # NHWC in training; export also writes NCHW


@dataclass
class DataConfig:
    data_dir: str = "data/coco/tfrecords"  # holds train/ and val/ from `python -m ssd.data.prepare`
    shuffle_buffer: int = 4096
    augment: bool = True
    deterministic: bool = False  # same seed -> same batches (slower: ordered, single-threaded map)
    cache: bool = False  # keep the decoded train split in memory (small datasets; see ssd/data/pipeline.py)
    crop_max_trials: int = 1  # windows tried per drawn crop option (the reference's 1; logged as max_samples)
    ignore_crowd: bool = False  # False: crowd boxes are ordinary boxes (the reference); True: no crop or match
    brightness: float = 0.125
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.05
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB, after / 255
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class TrainConfig:
    batch_size: int = 32  # per rank; the global batch is batch_size x ranks
    epochs: int = 80  # the last epoch; the run stops earlier at the target
    base_lr: float = 2.5e-3  # at the reference batch; scaled by global batch / lr_reference_batch
    lr_reference_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weight_decay_exclude_bn_bias: bool = False
    warmup_steps: int = 650
    warmup_factor: int = 0  # the MLPerf rule's k: warmup starts at base LR x (1 - 2^-k) (0: from 0)
    lr_decay_epochs: tuple[int, ...] = (40, 50)
    lr_decay_factor: float = 0.1
    precision: str = "float32"  # float32 | bfloat16 | float16 (float16 with dynamic loss scaling)
    xla: bool = False
    fp16_allreduce: bool = False  # Horovod fp16 gradient compression
    backbone_weights: str = ""  # checkpoint from `python -m ssd.import_weights --format torchvision`
    from_scratch: bool = False  # train without backbone_weights, knowingly
    # Checkpoints inside the timed run (asynchronous writes), 0: none; one is always written after run_stop.
    checkpoint_every_epochs: int = 0
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 3
    seed: int = -1  # -1: a fresh seed per run (logged); otherwise fixed
    max_steps: int = 0  # 0: no limit; > 0 stops early (tests, benchmarks)
    debug_nan_step: int = 0  # > 0: rank 0's loss is made NaN at this update (tests the non-finite stop)


@dataclass
class EvalConfig:
    epochs: tuple[int, ...] = (40, 50)  # evaluate after these epochs ...
    every: int = 5  # ... and every `every` epochs after `every_after` (0 disables the rule)
    every_after: int = 50
    target_map: float = 0.225  # COCO bbox mAP@[.5:.95], as a fraction
    batch_size: int = 32  # per rank
    score_threshold: float = 0.05
    pre_nms_top_k: int = 200
    nms_iou: float = 0.5
    max_detections: int = 200
    backend: str = "faster_coco_eval"  # faster_coco_eval (the same 12 numbers, 8-9x faster) | pycocotools
    # Score in a background process on rank 0 while training goes on; false: score before training on.
    async_scoring: bool = True
    poll_every_steps: int = 20  # while a score is pending, rank 0 tells every rank its state every N steps
    debug_scoring_delay: float = 0.0  # > 0: the background scorer sleeps this long before each scoring (tests)


@dataclass
class RunConfig:
    run_dir: str = "runs/latest"
    log_every_steps: int = 20
    progress_bar: bool = True
    echo_mllog: bool = False  # also print the compliance log's lines on the console (always in mlperf_log.txt)
    benchmark: str = "ssd-large"
    submission_org: str = "reference"
    submission_platform: str = "unknown"
    submission_division: str = "closed"  # closed | open
    submission_status: str = "onprem"  # cloud | onprem | preview | research (the MLPerf availability)
    # True only when the launcher dropped the page cache just before this run (run_and_time.sh
    # passes it after writing 3 to /proc/sys/vm/drop_caches); logged as cache_clear.
    cache_cleared: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def eval_epochs(self) -> list[int]:
        """The epochs (1-based) after which the run evaluates, ascending, up to train.epochs."""
        epochs = set(e for e in self.eval.epochs if e <= self.train.epochs)
        if self.eval.every > 0:
            epochs.update(range(self.eval.every_after + self.eval.every, self.train.epochs + 1, self.eval.every))
        return sorted(epochs)


def _ssd_large() -> Config:
    return Config()


def _demo() -> Config:
    """The built-in default run: the same model code on generated shapes, 2 CPU ranks, minutes."""
    return Config(
        model=ModelConfig(
            image_size=300,
            num_classes=4,
            width_multiplier=0.125,
            strides=(1, 1, 2, 2, 2, 1),
        ),
        data=DataConfig(data_dir="data/demo/tfrecords", shuffle_buffer=1024),
        train=TrainConfig(
            batch_size=16,
            epochs=12,
            # 0.02 at the default global batch of 2 ranks x 16. Measured on 2 CPU ranks: 0.08 (the
            # ssd_large rule's 2.5e-3 per image) left some seeds stuck at all-background (loss ~5.6).
            base_lr=0.02,  # at lr_reference_batch 32
            warmup_steps=100,  # from LR 0 (train.warmup_factor k = 0, as in ssd_large)
            lr_decay_epochs=(10,),
            from_scratch=True,
        ),
        # Evaluations after epochs 2, 3, 4, ...: stop early. A step takes about 0.6 s on 2 CPU ranks,
        # so a score is looked for every 2 steps (a broadcast costs 2-6 ms there).
        eval=EvalConfig(epochs=(2,), every=1, every_after=2, batch_size=16, poll_every_steps=2),
        run=RunConfig(run_dir="runs/demo", submission_division="open", submission_platform="cpu-2core"),
    )


def _coco128() -> Config:
    """The coco128 rehearsal: the 80-class COCO path learnt from real images on a CPU, in minutes.

    Trains on coco128's 126 annotated images and evaluates on all 128, so the network memorises
    them (open division). Tuned for memorisation on 2 CPU cores (README, "coco128 rehearsal").
    """
    return Config(
        model=ModelConfig(image_size=300, width_multiplier=0.125, strides=(1, 1, 2, 2, 2, 1)),  # 81 classes
        data=DataConfig(data_dir="data/coco128/tfrecords", shuffle_buffer=1024, augment=False, cache=True),
        train=TrainConfig(
            batch_size=4,  # per rank: 2 ranks x 4 = 15 steps per epoch of the 126 images
            epochs=160,
            # 0.025 at 2 x 4 images, from LR 0 (k = 0) over 100 steps; 0.075 diverged (NaN).
            base_lr=0.1,  # at lr_reference_batch 32
            warmup_steps=100,
            lr_decay_epochs=(120,),  # late: an early decay (epoch 31) stalled memorisation
            from_scratch=True,
        ),
        # mAP stays near 0 for about 50 epochs, then climbs fast: evaluations after epochs 20, 40,
        # 60, then every 5 epochs, so the run stops soon after the target.
        eval=EvalConfig(epochs=(20, 40, 60), every_after=60),  # then every 5
        run=RunConfig(run_dir="runs/coco128", submission_division="open", submission_platform="cpu-2core"),
    )


PRESETS: dict[str, typing.Callable[[], Config]] = {"ssd_large": _ssd_large, "demo": _demo, "coco128": _coco128}

_SECTIONS = {f.name: f for f in dataclasses.fields(Config)}


def _parse_scalar(text: str, kind: type, key: str):
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a bool (true/false), got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{key}: expected {kind.__name__}, got {text!r}") from None


def _parse_value(text: str, annotation, key: str):
    """Parses `text` as the field's declared type; tuples are comma-separated (empty text: ())."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        args = typing.get_args(annotation)
        items = [t for t in text.split(",") if t.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_scalar(t, args[0], key) for t in items)
        if len(items) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(_parse_scalar(t, a, key) for t, a in zip(items, args))
    return _parse_scalar(text, annotation, key)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Applies `section.key=value` strings to `cfg` (in place) and returns it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, text = item.split("=", 1)
        section_name, _, name = key.strip().partition(".")
        if section_name not in _SECTIONS or not name:
            raise ConfigError(f"unknown config key {key!r} (sections: {', '.join(_SECTIONS)})")
        section = getattr(cfg, section_name)
        hints = typing.get_type_hints(type(section))
        if name not in hints:
            raise ConfigError(f"unknown config key {key!r} (keys of {section_name}: {', '.join(hints)})")
        setattr(section, name, _parse_value(text, hints[name], key))
    return cfg


def validate(cfg: Config) -> Config:
    """Checks values and their relations once; raises ConfigError naming the key."""
    m, d, t, e = cfg.model, cfg.data, cfg.train, cfg.eval
    checks = [
        (m.image_size > 0, "model.image_size must be positive"),
        (m.num_classes >= 2, "model.num_classes counts background and at least one class"),
        (m.width_multiplier > 0, "model.width_multiplier must be positive"),
        (len(m.strides) == 6, "model.strides has 6 entries: box head, class head, conv7..conv10"),
        (len(m.aspect_ratios) == 6, "model.aspect_ratios has one entry per feature map (6)"),
        (len(m.anchor_scales) == 7, "model.anchor_scales has one more entry than feature maps (7)"),
        (list(m.anchor_scales) == sorted(m.anchor_scales), "model.anchor_scales must ascend"),
        (m.data_format in ("channels_last", "channels_first"), "model.data_format: channels_last | channels_first"),
        (len(d.mean) == 3 and len(d.std) == 3 and min(d.std) > 0, "data.mean/std: 3 values, std > 0"),
        (d.crop_max_trials >= 1, "data.crop_max_trials must be >= 1"),
        (t.batch_size >= 1, "train.batch_size must be >= 1"),
        (t.epochs >= 1, "train.epochs must be >= 1"),
        (t.base_lr > 0 and t.lr_reference_batch >= 1, "train.base_lr > 0 and train.lr_reference_batch >= 1"),
        (0 <= t.momentum < 1, "train.momentum must be in [0, 1)"),
        (t.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (t.warmup_steps >= 0, "train.warmup_steps must be >= 0"),
        (type(t.warmup_factor) is int and t.warmup_factor >= 0, "train.warmup_factor is the MLPerf integer k >= 0"),
        (list(t.lr_decay_epochs) == sorted(t.lr_decay_epochs), "train.lr_decay_epochs must ascend"),
        (t.precision in ("float32", "bfloat16", "float16"), "train.precision: float32 | bfloat16 | float16"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (min(t.checkpoint_every_steps, t.checkpoint_every_epochs, t.max_steps) >= 0,
         "train.checkpoint_every_steps, checkpoint_every_epochs, max_steps >= 0"),
        (t.seed >= -1, "train.seed is -1 (fresh) or a non-negative integer"),
        (e.every >= 0 and e.batch_size >= 1, "eval.every >= 0 and eval.batch_size >= 1"),
        (0 < e.target_map <= 1, "eval.target_map is a fraction in (0, 1]"),
        (e.backend in ("pycocotools", "faster_coco_eval"), "eval.backend: faster_coco_eval | pycocotools"),
        (e.poll_every_steps >= 1 and e.debug_scoring_delay >= 0,
         "eval.poll_every_steps >= 1 and eval.debug_scoring_delay >= 0"),
        (e.pre_nms_top_k >= 1 and e.max_detections >= 1, "eval.pre_nms_top_k, eval.max_detections >= 1"),
        (cfg.run.submission_division in ("closed", "open"), "run.submission_division: closed | open"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for text in m.aspect_ratios:
        try:
            ratios = [float(a) for a in text.split(":")]
        except ValueError:
            raise ConfigError(f"model.aspect_ratios: {text!r} is not like '2' or '2:3'") from None
        if not all(math.isfinite(a) and a > 0 for a in ratios):
            raise ConfigError(f"model.aspect_ratios: {text!r} must hold positive numbers")
    return cfg


def load_config(name: str, overrides: list[str] = ()) -> Config:
    """The preset `name` with `overrides` applied, validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown config {name!r} (presets: {', '.join(PRESETS)})")
    return validate(apply_overrides(PRESETS[name](), list(overrides)))


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def write_config(cfg: Config, run_dir: str) -> str:
    """Writes the resolved config to run_dir/config.json (atomically) and returns the path."""
    return write_json(os.path.join(run_dir, "config.json"), to_dict(cfg))


def read_config(path: str) -> Config:
    """Reads a config.json written by write_config back into a validated Config."""
    with open(path) as f:
        raw = json.load(f)
    cfg = Config()
    for section_name, values in raw.items():
        if section_name not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section {section_name!r}")
        section = getattr(cfg, section_name)
        hints = typing.get_type_hints(type(section))
        for name, value in values.items():
            if name not in hints:
                raise ConfigError(f"{path}: unknown config key {section_name}.{name}")
            setattr(section, name, tuple(value) if isinstance(value, list) else value)
    return validate(cfg)


def add_config_args(parser: argparse.ArgumentParser, default: str = "ssd_large") -> None:
    """Adds `--config NAME` and trailing `key=value` overrides to an entry point's parser."""
    parser.add_argument("--config", default=default, help=f"preset: {', '.join(PRESETS)} (default {default})")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")


def config_from_args(parser: cli.Parser, args: argparse.Namespace) -> Config:
    """The Config for parsed arguments; a ConfigError ends the program with `<module>: <reason>`."""
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as err:
        parser.fail(str(err))


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("ssd.config", __doc__)
    add_config_args(parser)
    cfg = config_from_args(parser, parser.parse_args(argv))
    json.dump(to_dict(cfg), sys.stdout, indent=2)
    print()
    print(f"# eval epochs: {cfg.eval_epochs()}", file=sys.stderr)


if __name__ == "__main__":
    main()
