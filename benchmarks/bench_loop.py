"""Framework overhead, measured in one process (the machine is noisy: ratios, not absolute times, are the result).

(a) kdlab KD epoch with cached teacher logits / kdlab CE-only epoch of the same student   (target <= 1.10)
(b) kdlab CE epoch / a minimal hand-written PyTorch loop doing the same work             (target <= 1.05)

With --switches also:
(c) KD epoch with train.precision=bf16 / the same in fp32
(d) KD epoch with train.channels_last on / off (conv students only; on is kdlab's default for conv nets)

Runs are interleaved (CE, KD, plain, CE, KD, plain, ...) and the median epoch time of each is compared.
Usage: python benchmarks/bench_loop.py [--model mlp|cnn] [--epochs 3] [--repeats 3] [--threads N] [--switches]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from kdlab.config import parse_config
from kdlab.data import TensorLoader, load_dataset
from kdlab.distill import Distiller, cached_teacher_logits
from kdlab.losses import build
from kdlab.models import create_model
from kdlab.train import fit

STUDENTS = {"mlp": {"name": "mlp", "width": 128, "depth": 1}, "cnn": {"name": "cnn", "width": 0.5, "depth": 2}}


def kdlab_epochs(data, student_spec, loss_name, teacher_logits, epochs, **train_extra):
    opts = {k: v for k, v in student_spec.items() if k != "name"}
    cfg = parse_config({"data": {"name": data.name}, "model": student_spec, "loss": {"name": loss_name},
                        "teacher": {"run": "unused"} if loss_name != "ce" else None,
                        "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
                        "schedule": {"name": "constant"},
                        "train": {"epochs": epochs, "batch_size": 128, "seed": 0, "progress": False,
                                  **train_extra}})
    torch.manual_seed(0)
    student = create_model(student_spec["name"], data.num_classes, data.in_shape, **opts)
    distiller = Distiller(student, build(loss_name), teacher_logits=teacher_logits)
    loader = TensorLoader(data.train, 128, shuffle=True, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(distiller, loader, None, cfg, tmp, progress=False)
    return [h["epoch_seconds"] for h in result["history"]]


def plain_epochs(data, student_spec, epochs):
    """The minimal loop a PyTorch user writes by hand: shuffle, slice, forward, CE, backward, step."""
    opts = {k: v for k, v in student_spec.items() if k != "name"}
    torch.manual_seed(0)
    model = create_model(student_spec["name"], data.num_classes, data.in_shape, **opts)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x, y = data.train.x, data.train.y
    times = []
    model.train()
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch)
        start = time.perf_counter()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(STUDENTS), default="mlp")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--switches", action="store_true", help="also time bf16 and channels_last KD epochs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("fashion_mnist", val_size=5000)
    teacher = create_model("mlp", data.num_classes, data.in_shape, width=1200, depth=2)
    teacher_logits = cached_teacher_logits(teacher, data.train.x, data.train.fingerprint())
    spec = STUDENTS[args.model]
    ce, kd, plain, bf16, nhwc = [], [], [], [], []
    for _ in range(args.repeats):
        # (a) and (b) in the hand-written loop's NCHW layout (kdlab's default turns channels_last on for conv nets)
        ce += kdlab_epochs(data, spec, "ce", None, args.epochs, channels_last=False)
        kd += kdlab_epochs(data, spec, "kd", teacher_logits, args.epochs, channels_last=False)
        plain += plain_epochs(data, spec, args.epochs)
        if args.switches:
            bf16 += kdlab_epochs(data, spec, "kd", teacher_logits, args.epochs, precision="bf16",
                                 channels_last=False)
            if args.model == "cnn":
                nhwc += kdlab_epochs(data, spec, "kd", teacher_logits, args.epochs, channels_last=True)
    med = {name: statistics.median(v) for name, v in (("ce", ce), ("kd", kd), ("plain", plain))}
    n = len(data.train)
    print(f"student {spec}, {n} training images, batch 128, {torch.get_num_threads()} threads, "
          f"{args.repeats}x{args.epochs} epochs each (median epoch seconds: kdlab CE {med['ce']:.3f}, "
          f"kdlab KD {med['kd']:.3f}, plain loop {med['plain']:.3f})")
    print(f"(a) KD epoch (cached teacher) / CE epoch = {med['kd'] / med['ce']:.3f}   target <= 1.10")
    print(f"(b) kdlab loop / hand-written loop     = {med['ce'] / med['plain']:.3f}   target <= 1.05")
    if bf16:
        print(f"(c) KD epoch bf16 / fp32               = {statistics.median(bf16) / med['kd']:.3f}   (< 1: bf16 helps)")
    if nhwc:
        print(f"(d) KD epoch channels_last on / off    = {statistics.median(nhwc) / med['kd']:.3f}   "
              "(< 1: channels_last helps)")


if __name__ == "__main__":
    main()
