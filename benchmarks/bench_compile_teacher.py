"""``teacher.compile``: the teacher's inference pass over a training set, torch.compile'd vs eager, in one process.

This is the pass that builds the teacher-output cache (and, with ``teacher.cache: false`` or augmentation, the
teacher's forward on every batch). For each teacher: the eager pass's time, the compiled pass's first call (which
compiles) and its later calls, and the ratios eager / compiled (> 1: compiling is faster). Passes are interleaved
and the median of the later calls is used. Outputs are checked to agree (max |difference| printed).
Usage: python benchmarks/bench_compile_teacher.py [--teachers mlp,cnn] [--rows 55000] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kdlab.models import create_model
from kdlab.models import predict_logits

TEACHERS = {
    "mlp": {"name": "mlp", "width": 1024, "depth": 2},  # the capacity study's largest teacher
    "cnn": {"name": "cnn", "width": 1.0, "depth": 2},   # the kinds study's teacher family
}


def timed(fn) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", default="mlp,cnn")
    parser.add_argument("--rows", type=int, default=55000, help="images in the pass (Fashion-MNIST's training set)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.randn(args.rows, 1, 28, 28)  # timing does not depend on the pixel values
    print(f"teacher inference over {args.rows} images, batch {args.batch_size}, {args.threads} threads, "
          f"torch {torch.__version__}, {args.repeats} interleaved repeats (medians)")
    for key in args.teachers.split(","):
        spec = dict(TEACHERS[key])
        torch.manual_seed(0)
        teacher = create_model(spec.pop("name"), 10, (1, 28, 28), **spec).eval()
        compiled = torch.compile(teacher)
        first, _ = timed(lambda: predict_logits(compiled, x, args.batch_size))
        eager_s, compiled_s = [], []
        for _ in range(args.repeats):
            seconds, eager_out = timed(lambda: predict_logits(teacher, x, args.batch_size))
            eager_s.append(seconds)
            seconds, compiled_out = timed(lambda: predict_logits(compiled, x, args.batch_size))
            compiled_s.append(seconds)
        eager, steady = statistics.median(eager_s), statistics.median(compiled_s)
        diff = (eager_out - compiled_out).abs().max().item()
        print(f"\n{key} teacher {TEACHERS[key]}")
        print(f"  eager pass                 {eager:7.2f} s")
        print(f"  compiled, first pass       {first:7.2f} s   (includes compiling)")
        print(f"  compiled, later passes     {steady:7.2f} s   max |eager - compiled| = {diff:.2e}")
        print(f"  eager / compiled, later passes: {eager / steady:.2f}x;  one cache build (first pass): "
              f"{eager / first:.2f}x")
        breakeven = (first - steady) / (eager - steady) if eager > steady else float("inf")
        print(f"  passes needed before compiling pays off: {breakeven:.1f}" if breakeven != float("inf")
              else "  compiling never pays off here (later passes are not faster)")


if __name__ == "__main__":
    main()
