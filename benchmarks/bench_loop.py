"""Framework overhead of the training loop, measured in one process (the machine is noisy: ratios, not absolute
times, are the result), before and after the loop stopped reading tensors on the host every step.

For each student (MLP and CNN by default), the median epoch time of:
    kdlab CE, kdlab KD     kdlab's epoch (kdlab.train.loop.train_epoch, what fit runs per epoch): statistics stay on
                           the device, read every 20 steps and at epoch end
    before CE, before KD   the previous loop, kept here as the baseline: the same objective and TrainStep, but every
                           step reads the loss, the correct count and each loss part on the host (as fit did)
    hand CE                a minimal hand-written PyTorch loop doing the same work; it sums the loss and the correct
                           count on the device and reads them once per epoch

printed as ratios:
    (a) KD epoch (cached teacher) / CE epoch of the same loop     target <= 1.10
    (b) loop / hand-written loop, CE epochs                       target <= 1.05
each for "before" and "after" (kdlab). With --switches also, for kdlab's loop:
    (c) KD epoch with train.precision=bf16 / the same in fp32
    (d) KD epoch with train.channels_last on / off (conv students only; on is kdlab's default for conv nets)

After one untimed warm-up epoch per student, runs are interleaved (per repeat: kdlab CE, kdlab KD, before CE,
before KD, hand CE, ...) and medians compared. Epochs are timed with the process's CPU time by default (``--clock
process``): on a machine shared with other work, wall time also counts the time the process waits for a core; with
``--threads 1`` CPU time is the work done. ``--clock wall`` times the wall clock instead.
Usage: python benchmarks/bench_loop.py [--models mlp,cnn] [--epochs 3] [--repeats 3] [--threads N] [--clock C]
       [--switches]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdlab.config import RunConfig, parse_config
from kdlab.data import TensorLoader, load_dataset
from kdlab.distill import Distiller, cached_teacher_logits
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.train.loop import train_epoch
from kdlab.train.step import TrainStep

STUDENTS = {"mlp": {"name": "mlp", "width": 128, "depth": 1}, "cnn": {"name": "cnn", "width": 0.5, "depth": 2}}
BATCH = 128
CLOCKS = {"process": time.process_time, "wall": time.perf_counter}


def _setup(data, student_spec, loss_name, teacher_logits, epochs, **train_extra):
    opts = {k: v for k, v in student_spec.items() if k != "name"}
    cfg: RunConfig = parse_config({
        "data": {"name": data.name}, "model": student_spec, "loss": {"name": loss_name},
        "teacher": {"run": "unused"} if loss_name != "ce" else None,
        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
        "schedule": {"name": "constant"},
        "train": {"epochs": epochs, "batch_size": BATCH, "seed": 0, "progress": False, **train_extra}})
    torch.manual_seed(0)
    student = create_model(student_spec["name"], data.num_classes, data.in_shape, **opts)
    objective = Distiller(student, build(loss_name), teacher_logits=teacher_logits)
    return cfg, objective, TensorLoader(data.train, BATCH, shuffle=True, seed=0)


def kdlab_epochs(clock, data, student_spec, loss_name, teacher_logits, epochs, **train_extra):
    """Seconds of each epoch of kdlab's loop (train_epoch, as fit runs it; no checkpoint is written)."""
    cfg, objective, loader = _setup(data, student_spec, loss_name, teacher_logits, epochs, **train_extra)
    step = TrainStep(objective, cfg.train, cfg.optim, cfg.schedule, len(loader))
    times = []
    for epoch in range(epochs):
        started = clock()
        train_epoch(step, loader, epoch, Path("unused"), show=False, steps=len(loader))
        times.append(clock() - started)
    return times


def before_epochs(clock, data, student_spec, loss_name, teacher_logits, epochs, **train_extra):
    """Training seconds of each epoch of the previous loop: the same step, then per-step host reads of the loss (and
    its NaN check), the correct count and every loss part, summed on the host."""
    cfg, objective, loader = _setup(data, student_spec, loss_name, teacher_logits, epochs, **train_extra)
    step = TrainStep(objective, cfg.train, cfg.optim, cfg.schedule, len(loader))
    times = []
    for epoch in range(epochs):
        objective.train()
        objective.set_epoch(epoch)
        loader.set_epoch(epoch)
        started = clock()
        loss_sum, correct, seen, parts_sum = torch.zeros((), dtype=torch.float64), 0, 0, {}
        for i, (x, y, index) in enumerate(loader):
            x, y, index = step.to_device(x, y, index)
            out = step(x, y, index, epoch * len(loader) + i)
            value = out.loss.item()
            if not math.isfinite(value):
                raise RuntimeError(f"loss became {value}")
            n = len(y)
            loss_sum += value * n
            correct += (out.logits.argmax(1) == y).sum().item()
            seen += n
            for key, part in out.parts.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + float(part) * n
        times.append(clock() - started)
    return times


def hand_epochs(clock, data, student_spec, epochs):
    """The minimal loop a PyTorch user writes by hand: shuffle, slice, forward, CE, backward, step; the epoch's loss
    and correct count summed on the device and read once per epoch."""
    opts = {k: v for k, v in student_spec.items() if k != "name"}
    torch.manual_seed(0)
    model = create_model(student_spec["name"], data.num_classes, data.in_shape, **opts)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x, y = data.train.x, data.train.y
    times = []
    model.train()
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        start = clock()
        perm = torch.randperm(len(x), generator=g)
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y[idx]).sum()
        _ = (loss_sum.item() / len(x), correct.item() / len(x))
        times.append(clock() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated students: " + ", ".join(STUDENTS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="process",
                        help="process: CPU time of this process (default); wall: elapsed time")
    parser.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist (the measurement) or digits (a "
                        "quick check that the script runs)")
    parser.add_argument("--switches", action="store_true", help="also time bf16 and channels_last KD epochs")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in STUDENTS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; allowed: {', '.join(STUDENTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    data = load_dataset(args.dataset, val_size=5000 if args.dataset == "fashion_mnist" else 200)
    teacher = create_model("mlp", data.num_classes, data.in_shape, width=1200, depth=2)
    teacher_logits = cached_teacher_logits(teacher, data.train.x, data.train.fingerprint())
    print(f"{len(data.train)} {data.name} training images, batch {BATCH}, {torch.get_num_threads()} threads, "
          f"{args.repeats}x{args.epochs} epochs each; median epoch seconds ({args.clock} clock) and ratios")
    for name in models:
        spec = STUDENTS[name]
        times: dict[str, list[float]] = {k: [] for k in ("kdlab CE", "kdlab KD", "before CE", "before KD", "hand CE",
                                                        "kdlab KD bf16", "kdlab KD nhwc")}
        kdlab_epochs(clock, data, spec, "kd", teacher_logits, 1, channels_last=False)  # untimed: first-call costs
        hand_epochs(clock, data, spec, 1)
        for _ in range(args.repeats):
            # in the hand-written loop's NCHW layout (kdlab's default turns channels_last on for conv nets)
            times["kdlab CE"] += kdlab_epochs(clock, data, spec, "ce", None, args.epochs, channels_last=False)
            times["kdlab KD"] += kdlab_epochs(clock, data, spec, "kd", teacher_logits, args.epochs,
                                              channels_last=False)
            times["before CE"] += before_epochs(clock, data, spec, "ce", None, args.epochs, channels_last=False)
            times["before KD"] += before_epochs(clock, data, spec, "kd", teacher_logits, args.epochs,
                                                channels_last=False)
            times["hand CE"] += hand_epochs(clock, data, spec, args.epochs)
            if args.switches:
                times["kdlab KD bf16"] += kdlab_epochs(clock, data, spec, "kd", teacher_logits, args.epochs,
                                                       precision="bf16", channels_last=False)
                if name == "cnn":
                    times["kdlab KD nhwc"] += kdlab_epochs(clock, data, spec, "kd", teacher_logits, args.epochs,
                                                           channels_last=True)
        med = {k: statistics.median(v) for k, v in times.items() if v}
        print(f"\nstudent {name} {spec}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
        for loop in ("before", "kdlab"):
            print(f"{name} {loop:<6} (a) KD epoch / CE epoch     = {med[f'{loop} KD'] / med[f'{loop} CE']:.3f}"
                  f"   target <= 1.10")
            print(f"{name} {loop:<6} (b) loop / hand-written loop = {med[f'{loop} CE'] / med['hand CE']:.3f}"
                  f"   target <= 1.05")
        if "kdlab KD bf16" in med:
            print(f"{name} kdlab  (c) KD epoch bf16 / fp32      = {med['kdlab KD bf16'] / med['kdlab KD']:.3f}"
                  "   (< 1: bf16 helps)")
        if "kdlab KD nhwc" in med:
            print(f"{name} kdlab  (d) KD channels_last on / off = {med['kdlab KD nhwc'] / med['kdlab KD']:.3f}"
                  "   (< 1: channels_last helps)")


if __name__ == "__main__":
    main()
