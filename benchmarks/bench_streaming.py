"""Streaming an image folder from disk vs holding it in memory: epoch time, and peak memory on a dataset larger than a
memory cap, both measured in one run.

1. Epoch time. One image folder of PNG files (3x32x32, random content) is trained on for ``--epochs`` epochs by the
   same recipe (``kdlab.recipe.run``, a CNN student), once in memory (decoded once, TensorLoader) and once streamed
   (``data.streaming: true``: decoded batch by batch, DatasetLoader, with 0 and with ``--workers`` decoding worker
   processes). Prints the median training seconds per epoch (``epoch_seconds`` of metrics.jsonl, decoding included)
   and the ratios streamed / in memory.
2. Memory. A second folder holds more images than fit under ``--cap-mb`` even as uint8 pixels; each mode trains one
   epoch of a small MLP on it in a fresh process. The child first runs the same mode once on the small folder (a
   warm-up: imports, torch's lazy initialisation, allocator arenas), then resets its resident-memory high-water mark
   (writing 5 to /proc/self/clear_refs, Linux >= 4.0), trains on the big folder and reports VmHWM - VmRSS_before:
   the extra peak memory of loading and training that data. glibc's mmap threshold is pinned at 128 KiB
   (MALLOC_MMAP_THRESHOLD_) so that freed batches leave the resident set, as in bench_analysis_memory. The streamed
   run stays under the cap while the data on disk (and in memory) exceed it. No cgroup is needed: the cap is a
   threshold the measured peak is compared with, not an enforced limit.

    python benchmarks/bench_streaming.py [--images 4000] [--big-images 40000] [--cap-mb 64] [--workers 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = 10


def write_folder(root: Path, images: int, test_images: int, seed: int = 0) -> int:
    """ROOT/train and ROOT/test class folders of random 3x32x32 PNGs (the class shifts the mean); returns bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, n in (("train", images), ("test", test_images)):
        for i in range(n):
            label = i % CLASSES
            folder = root / part / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(rng.normal(60 + 14 * label, 50, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{i:06d}.png", compress_level=1)
    return sum(p.stat().st_size for p in root.rglob("*.png"))


def config(root: Path, streaming: bool, workers: int, model: dict, epochs: int) -> dict:
    return {"data": {"name": "image_folder", "data_dir": str(root), "val_size": 0, "streaming": streaming,
                     "num_workers": workers, "options": {"channels": 3, "mean": [0.5, 0.5, 0.5],
                                                         "std": [0.25, 0.25, 0.25]}},
            "model": model, "optim": {"name": "sgd", "lr": 0.05},
            "train": {"epochs": epochs, "batch_size": 128, "eval_batch_size": 512, "seed": 0, "progress": False}}


def child(spec_path: str) -> None:
    """Run one config in this process and print {"extra_peak_mb", "seconds", "epoch_seconds"} as JSON."""
    import torch

    from kdlab.config import parse_config
    from kdlab.recipe import run

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    cfg = parse_config(spec["config"])
    if spec.get("warmup"):
        run(parse_config(spec["warmup"]), spec["out"] + "-warmup")
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    run(cfg, spec["out"])
    seconds = time.perf_counter() - started
    metrics = [json.loads(line) for line in (Path(spec["out"]) / "metrics.jsonl").read_text().splitlines()]
    print(json.dumps({"extra_peak_mb": (_status_kb("VmHWM") - before) / 1024, "seconds": seconds,
                      "epoch_seconds": [m["epoch_seconds"] for m in metrics]}))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(cfg: dict, out: Path, threads: int, warmup: dict | None = None) -> dict:
    """One fresh process runs ``warmup`` (if given), then ``cfg``; its report on ``cfg``."""
    spec = out.with_suffix(".json")
    spec.write_text(json.dumps({"config": cfg, "out": str(out), "threads": threads, "warmup": warmup}))
    env = {**os.environ, "KDLAB_CACHE": str(out.parent / "cache"), "OMP_NUM_THREADS": str(threads),
           "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    done = subprocess.run([sys.executable, __file__, "--child", str(spec)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"child run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000, help="training images for the epoch-time part")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--big-images", type=int, default=40000, help="training images for the memory part")
    parser.add_argument("--cap-mb", type=float, default=64.0, help="the memory cap the streamed run must stay under")
    parser.add_argument("--workers", type=int, default=1, help="decoding worker processes (the second streamed run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    cnn = {"name": "cnn", "width": 0.5, "depth": 2}
    mlp = {"name": "mlp", "width": 32, "depth": 1}
    with tempfile.TemporaryDirectory(prefix="kdlab-bench-streaming-") as tmp:
        tmp = Path(tmp)
        small_bytes = write_folder(tmp / "small", args.images, 500)
        print(f"epoch time: {args.images:,} training images 3x32x32 ({small_bytes / 2**20:.1f} MB of PNG), "
              f"cnn student, batch 128, {args.epochs} epochs, {args.threads} thread(s)")
        rows = {}
        for label, streaming, workers in (("in memory", False, 0), ("streamed, 0 workers", True, 0),
                                          (f"streamed, {args.workers} worker(s)", True, args.workers)):
            report = measure(config(tmp / "small", streaming, workers, cnn, args.epochs),
                             tmp / f"run-{len(rows)}", args.threads)
            rows[label] = statistics.median(report["epoch_seconds"])
            print(f"  {label:<24} median epoch {rows[label]:.2f} s  (whole run {report['seconds']:.1f} s)")
        base = rows["in memory"]
        for label, seconds in rows.items():
            if label != "in memory":
                print(f"  epoch time {label} / in memory = {seconds / base:.2f}")

        big_bytes = write_folder(tmp / "big", args.big_images, 200, seed=1)
        pixels_mb = args.big_images * 3 * 32 * 32 / 2**20
        print(f"memory: {args.big_images:,} training images: {big_bytes / 2**20:.1f} MB of PNG on disk, "
              f"{pixels_mb:.1f} MB as uint8 pixels, {4 * pixels_mb:.1f} MB as float32; cap {args.cap_mb:.0f} MB")
        peaks = {}
        for label, streaming in (("in memory", False), ("streamed", True)):
            report = measure(config(tmp / "big", streaming, 0, mlp, 1), tmp / f"big-{label[:2]}", args.threads,
                             warmup=config(tmp / "small", streaming, 0, mlp, 1))
            peaks[label] = report["extra_peak_mb"]
            print(f"  {label:<10} extra peak memory {peaks[label]:.1f} MB  (one epoch, {report['seconds']:.1f} s)")
        print(f"  streamed extra peak / cap = {peaks['streamed'] / args.cap_mb:.2f}  "
              f"({'under' if peaks['streamed'] < args.cap_mb else 'OVER'} the cap); "
              f"data on disk / cap = {big_bytes / 2**20 / args.cap_mb:.2f}; "
              f"in-memory extra peak / cap = {peaks['in memory'] / args.cap_mb:.2f}")


if __name__ == "__main__":
    main()
