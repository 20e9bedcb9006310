"""Analysis-pass memory: extra peak RSS of the capacity study's streamed teacher profile vs the dataset size.

The capacity study profiles every teacher (dark knowledge + class affinity) with ``profile_model`` on the whole
distillation set and the test set. That pass runs the model batch by batch and keeps only running sums, so the
memory it allocates on top of its input should not grow with the dataset. This script checks it, in one process:
for each dataset size N it builds random inputs x [N, 1, 28, 28] float32 and labels y [N] (the dataset, held in
memory as the study holds it, so it grows with N and is not counted), then measures the peak extra RSS of
(streamed) ``profile_model`` exactly as the study calls it, on the study's largest teacher (MLP, depth 2, width
1024, random init: memory does not depend on the weights), and
(naive)    the contrast, what a non-streaming pass costs: all logits at once (N x C) plus the softmax
           probabilities at every temperature in float64 (T x N x C), which grows linearly with N.

Measurement (Linux >= 4.0): write "5" to /proc/self/clear_refs to reset the peak-RSS high-water mark, read VmRSS
before the call and VmHWM after it (/proc/self/status); extra = VmHWM - VmRSS. Before each call the garbage
collector runs and glibc's malloc_trim(0) hands freed heap back to the kernel, so memory left over by an earlier
call cannot be reused silently and hide a growth. One warm-up call of each pass comes first; each measurement is
taken twice and the smaller kept. 1 MB = 2^20 bytes. Target: streamed extra peak at the largest N / at the
smallest N <= 1.10 (flat).

Allocator: by default glibc's mmap threshold is pinned at 128 KiB (mallopt M_MMAP_THRESHOLD), so every block of
128 KiB or more (the 4 MB hidden activations of a 1024-wide batch) is mmapped and unmapped on free, and RSS follows
the memory that is actually live. Under glibc's default *dynamic* threshold those blocks move into the heap after
the first frees, and how many stay resident depends on earlier allocations: the streamed pass then reads 12-25 MB
in steps of ~4 MB (one activation buffer) from one process to the next whatever N is, and a naive pass that keeps
small per-batch tensors alive pins one freed 4 MB block per batch (heap fragmentation). ``--malloc-default``
measures under glibc's defaults anyway.
Usage: python benchmarks/bench_analysis_memory.py [--sizes 5000,20000,80000,320000] [--threads 2] [--malloc-default]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from kdlab.analysis.profile import profile_model
from kdlab.models import create_model

NUM_CLASSES = 10
IN_SHAPE = (1, 28, 28)
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)  # the capacity study's default ``temperatures``
BATCH_SIZE = 1024  # profile_model's default, which the study uses
TEACHER = {"width": 1024, "depth": 2}  # the capacity study's largest teacher (default preset)
MB = 2 ** 20

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_malloc_trim: Callable[[int], int] | None = getattr(_libc, "malloc_trim", None)  # glibc only
_mallopt: Callable[[int, int], int] | None = getattr(_libc, "mallopt", None)
M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


def status_kb(field: str) -> int:
    """One ``kB`` field (VmRSS, VmHWM, ...) of /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: "5" in /proc/PID/clear_refs)."""
    fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
    try:
        os.write(fd, b"5")
    finally:
        os.close(fd)


def check_peak_reset() -> str | None:
    """None if the high-water mark can be reset here, else why not."""
    try:
        reset_peak_rss()
        status_kb("VmHWM")
        status_kb("VmRSS")
    except OSError as e:
        return f"cannot reset the peak-RSS high-water mark via /proc/self/clear_refs: {e}"
    except RuntimeError as e:
        return str(e)
    return None


def extra_peak_mb(fn: Callable[[], object]) -> float:
    """Peak RSS above the RSS just before ``fn()`` runs, in MB (the result is dropped after the peak is read)."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    before = status_kb("VmRSS")
    reset_peak_rss()
    result = fn()
    peak = status_kb("VmHWM")
    del result
    return (peak - before) * 1024 / MB


def streamed_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> object:
    """The capacity study's analysis pass (studies/capacity.py, ``_profile_teachers``)."""
    return profile_model(model, x, y, NUM_CLASSES, TEMPERATURES)


@torch.inference_mode()
def naive_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> object:
    """CONTRAST, not kdlab code: every logit and every tempered softmax kept at once (grows with N)."""
    model.eval()
    logits = torch.cat([model(x[i:i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)])  # [N, C]
    probs = [torch.softmax(logits.double() / t, dim=1) for t in TEMPERATURES]  # T x [N, C] float64
    return logits, probs, y


def measure(fn: Callable[[], object], repeats: int) -> float:
    return min(extra_peak_mb(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,80000,320000",
                        help="comma-separated dataset sizes N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="measurements per pass and size; the smallest is kept")
    parser.add_argument("--malloc-default", action="store_true",
                        help="keep glibc's dynamic mmap threshold (RSS then moves in ~4 MB steps with allocator state)")
    args = parser.parse_args()
    sizes: Sequence[int] = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) < 2 or sizes[0] < 1:
        parser.error("--sizes needs at least two positive sizes")
    problem = check_peak_reset()
    if problem is not None:
        # getrusage's ru_maxrss cannot be reset, so without clear_refs one process cannot measure the peak of each
        # call separately; a fresh process per size would still count its own setup (building x, warm-up) in VmHWM.
        sys.exit(f"bench_analysis_memory: measurement impossible: {problem} (needs Linux >= 4.0 and a writable "
                 "/proc/self/clear_refs)")
    pinned = False
    if not args.malloc_default:
        pinned = _mallopt is not None and _mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1
        if not pinned:
            print("note: could not pin the mmap threshold (not glibc?): numbers move with allocator state")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=NUM_CLASSES, in_shape=IN_SHAPE, **TEACHER)
    params = sum(p.numel() for p in model.parameters())

    # warm-up: thread pools, kernels, lazily loaded library pages, allocator caches
    x = torch.rand(2 * BATCH_SIZE, *IN_SHAPE)
    y = torch.randint(0, NUM_CLASSES, (len(x),))
    streamed_pass(model, x, y)
    naive_pass(model, x, y)
    del x, y

    started = time.perf_counter()
    rows = []
    for n in sizes:
        x = torch.rand(n, *IN_SHAPE)  # the dataset: built before measuring, not counted
        y = torch.randint(0, NUM_CLASSES, (n,))
        input_mb = (x.nbytes + y.nbytes) / MB
        streamed = measure(lambda: streamed_pass(model, x, y), args.repeats)
        naive = measure(lambda: naive_pass(model, x, y), args.repeats)
        rows.append((n, input_mb, streamed, naive))
        del x, y
    seconds = time.perf_counter() - started

    print(f"analysis pass memory: teacher mlp(width={TEACHER['width']}, depth={TEACHER['depth']}), {params:,} "
          f"parameters, batch {BATCH_SIZE}, temperatures {list(TEMPERATURES)}, {torch.get_num_threads()} threads, "
          f"min of {args.repeats} measurements, {seconds:.0f} s")
    allocator = "glibc mmap threshold pinned at 128 KiB" if pinned else "malloc defaults (dynamic threshold)"
    print(f"allocator: {allocator}")
    print("extra peak = peak RSS during the call - RSS just before it (the input x, y is not counted)")
    print(f"{'N':>9}  {'input MB':>9}  {'streamed extra peak MB':>22}  {'naive extra peak MB':>19}")
    for n, input_mb, streamed, naive in rows:
        print(f"{n:>9,}  {input_mb:>9.1f}  {streamed:>22.1f}  {naive:>19.1f}")
    (n0, _, s0, v0), (n1, _, s1, v1) = rows[0], rows[-1]
    growth = n1 / n0
    print(f"streamed extra peak, N={n1:,} / N={n0:,}: {s1 / s0:.2f}   target <= 1.10 (flat)")
    print(f"naive    extra peak, N={n1:,} / N={n0:,}: {v1 / v0:.2f}   (contrast; N grew {growth:.0f}x)")


if __name__ == "__main__":
    main()
