"""Training throughput of the real `ssd.train` step on generated in-memory data, and its MFU.

    python -m benchmark.train_throughput [--config ssd_large] [--steps 20] [--warmup 5] [--out FILE] [key=value ...]
    horovodrun -np 8 python -m benchmark.train_throughput --config ssd_large train.precision=bfloat16

The resolution, per-rank batch, precision and XLA come from the config (model.image_size,
train.batch_size, train.precision, train.xla); the rank count from the launcher. Each rank runs
`ssd.train.make_train_step` (forward, loss, Horovod-averaged gradients, SGD update) on one fixed
generated batch that stays on the device; the first --warmup steps (tracing, XLA compilation,
allocator growth) are not timed. Prints images/s (all ranks, and per rank) and the model FLOP
utilisation: per-rank images/s x 3 x forward FLOPs per image (benchmark.model_stats; about 433
GFLOPs at 1200) / the device's peak (a table of GPU peaks for the precision; for a CPU, cores x
clock x FLOPs per cycle from /proc/cpuinfo; --peak-tflops overrides). Rank 0 writes --out (default
benchmark/results/train_throughput_<device>.json): the latest run's figures at the top level and
every setting measured on that device under `runs`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time

import numpy as np

import ssd  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf

from benchmark import RESULTS, save_result
from benchmark.model_stats import forward_flops
from ssd import cli, config, distributed, schedule
from ssd.anchors import default_boxes
from ssd.model import build_model
from ssd.train import make_optimizer, make_train_step, set_precision


# Dense peak TFLOP/s per GPU by (name fragment, precision): float32 as TF32 on tensor cores.
GPU_PEAK_TFLOPS = {
    ("H100", "bfloat16"): 989.4, ("H100", "float16"): 989.4, ("H100", "float32"): 494.7,
    ("H200", "bfloat16"): 989.4, ("H200", "float16"): 989.4, ("H200", "float32"): 494.7,
    ("A100", "bfloat16"): 312.0, ("A100", "float16"): 312.0, ("A100", "float32"): 156.0,
}


def cpu_peak_tflops() -> float:
    """This process's share of the CPU: cores x MHz x FLOPs/cycle (float32 FMA: 64 with AVX-512, 32 with AVX2)."""
    with open("/proc/cpuinfo") as f:
        info = f.read()
    mhz = max(float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info))
    flags = re.search(r"flags\s*:(.*)", info).group(1).split()
    per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 8
    return len(os.sched_getaffinity(0)) * mhz * 1e6 * per_cycle / 1e12


def device_name() -> tuple[str, str]:
    """(file-name slug, description) of this process's accelerator, or of the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
        return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"), name
    with open("/proc/cpuinfo") as f:
        model = re.search(r"model name\s*:\s*(.*)", f.read())
    cpu = model.group(1).strip() if model else platform.machine()
    return "cpu", f"{cpu} x{len(os.sched_getaffinity(0))} cores"


def peak_tflops(description: str, precision: str) -> float:
    for (fragment, prec), tflops in GPU_PEAK_TFLOPS.items():
        if fragment in description and prec == precision:
            return tflops
    if "GPU" in description.upper() or "NVIDIA" in description.upper():
        raise ValueError(f"no peak known for {description!r} in {precision}: pass --peak-tflops")
    return cpu_peak_tflops()


def generated_batch(cfg, num_boxes: int, seed: int = 0):
    """Images [B,S,S,3] normalised-like, loc targets [B,n,4], cls targets [B,n] (about 1% positive)."""
    rng = np.random.default_rng(seed)
    b, s, c = cfg.train.batch_size, cfg.model.image_size, cfg.model.num_classes
    images = rng.normal(size=(b, s, s, 3)).astype(np.float32)
    loc = rng.normal(scale=0.5, size=(b, num_boxes, 4)).astype(np.float32)
    cls = np.where(rng.random((b, num_boxes)) < 0.01, rng.integers(1, c, (b, num_boxes)), 0).astype(np.int32)
    return tf.constant(images), tf.constant(loc), tf.constant(cls)


def main(argv: list[str] | None = None) -> None:
    parser = cli.Parser("benchmark.train_throughput", __doc__)
    config.add_config_args(parser)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak (default: looked up)")
    parser.add_argument("--out", help="JSON file (default benchmark/results/train_throughput_<device>.json)")
    args = parser.parse_args(argv)
    cfg = config.config_from_args(parser, args)
    world = distributed.init()
    t = cfg.train

    slug, description = device_name()
    gflops = forward_flops(build_model(cfg.model), cfg.model.image_size) / 1e9  # float32 graph: same count
    set_precision(t.precision)
    model = build_model(cfg.model)
    optimizer = make_optimizer(t, schedule.from_config(t, t.batch_size * world.size, steps_per_epoch=1000))
    optimizer.build(model.trainable_variables)
    distributed.broadcast(model.variables + list(optimizer.variables))
    train_step = make_train_step(model, optimizer, cfg, world.rank)
    batch = generated_batch(cfg, len(default_boxes(cfg.model)), seed=world.rank)

    for _ in range(args.warmup):
        loss = train_step(*batch)
    float(loss)  # the warm-up has finished on the device
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(*batch)
    final_loss = float(loss)  # waits for the last step (the loss is allreduced: all ranks done)
    seconds = time.perf_counter() - start

    per_rank = args.steps * t.batch_size / seconds
    try:
        peak = args.peak_tflops or peak_tflops(description, t.precision)
    except ValueError as err:
        parser.fail(str(err))
    mfu = per_rank * 3 * gflops / (peak * 1e3)
    record = {
        "command": " ".join(["python -m benchmark.train_throughput --config", args.config, *args.overrides,
                             f"--steps {args.steps} --warmup {args.warmup}"]),
        "device": description, "precision": t.precision, "xla": t.xla, "image_size": cfg.model.image_size,
        "width_multiplier": cfg.model.width_multiplier, "batch_per_rank": t.batch_size, "ranks": world.size,
        "images_per_s": round(per_rank * world.size, 2), "images_per_s_per_rank": round(per_rank, 2),
        "forward_gflops_per_image": round(gflops, 3), "peak_tflops_per_device": round(peak, 1),
        "mfu": round(mfu, 5), "steps": args.steps, "warmup_steps": args.warmup, "seconds": round(seconds, 3),
        "final_loss": final_loss,
    }
    if world.rank != 0:
        return
    for key in ("device", "precision", "image_size", "batch_per_rank", "ranks", "images_per_s", "mfu"):
        print(f"{key}={record[key]}")
    if not np.isfinite(final_loss):
        parser.fail(f"non-finite loss {final_loss}: the figures above are not valid")
    path = args.out or os.path.join(RESULTS, f"train_throughput_{slug}.json")
    runs = []
    if os.path.exists(path):
        with open(path) as f:
            runs = json.load(f).get("runs", [])
    setting = ("precision", "xla", "image_size", "width_multiplier", "batch_per_rank", "ranks")
    runs = [r for r in runs if any(r.get(k) != record[k] for k in setting)] + [record]
    save_result(path, {**record, "runs": runs})


if __name__ == "__main__":
    main()
