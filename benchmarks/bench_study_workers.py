"""Study throughput: wall time of the capacity study (quick preset) with 2 pool workers vs 1 local, in one process.

Each variant trains every run from scratch into a fresh temporary store (and teacher-output cache), so neither
reuses the other's runs. The ratio local / pool is the speed-up (ideal: the number of workers, when the cores are
free; teachers and students are separate waves, so a wave with fewer runs than workers leaves cores idle).
Usage: python benchmarks/bench_study_workers.py [--dataset fashion_mnist|digits] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

from kdlab.studies import run_study
from kdlab.studies.capacity import CAPACITY

# digits has 1,797 images: shrink the quick preset's subsets to fit (val 200, teachers on all the rest)
DIGITS = ["data.name=digits", "data.val_size=200", "teachers.train_subset=null", "student.train_subset=300"]


def timed_study(name: str, workers: int, overrides: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KDLAB_CACHE"] = str(Path(tmp) / "cache")  # no teacher outputs shared between the variants
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the study's own summary table is not the result here
            results = run_study(CAPACITY, out=Path(tmp) / "out", preset="quick", progress=False,
                                overrides=overrides + [f"store={Path(tmp) / 'store'}", f"executor.name={name}",
                                                       f"executor.workers={workers}"])
        return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("fashion_mnist", "digits"), default="fashion_mnist")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    overrides = DIGITS if args.dataset == "digits" else []
    local_s, local = timed_study("local", 1, overrides)
    pool_s, pool = timed_study("pool", args.workers, overrides)
    same = [s["test_accuracy"] for s in local["students"]] == [s["test_accuracy"] for s in pool["students"]]
    print(f"capacity study, quick preset, {args.dataset}: {local['runs_trained']} runs, {os.cpu_count()} CPUs")
    print(f"  local, 1 worker : {local_s:7.1f} s")
    print(f"  pool, {args.workers} workers: {pool_s:7.1f} s")
    print(f"  speed-up (local / pool): {local_s / pool_s:.2f}x   identical student accuracies: {same}")


if __name__ == "__main__":
    main()
