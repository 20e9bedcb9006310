"""Coverage of the mismatch gap's 95% interval when teachers of one size differ, against two simpler intervals.

Simulates the random-effects model of one map cell with true gap 0 (docs/studies/capacity-map.md, "The statistic"):
y[t][s][r] = A_ts + B_r + C_tr + E_tsr for the best and the largest teacher t, teacher seeds s, paired student seeds r,
with A ~ N(0, sigma_teacher^2), B ~ N(0, 1), C ~ N(0, 0.3^2), E ~ N(0, 0.5^2), and prints the share of runs whose
interval covers 0 for kdlab.analysis.mismatch_gap.difference_interval (variance components, Satterthwaite), a paired
t over student seeds alone, and a two-level percentile bootstrap (teacher seeds per side, student seeds shared).
Usage: python benchmarks/bench_gap_coverage.py [--reps 2000] [--boot 400]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy.stats import t as student_t

from kdlab.analysis.mismatch_gap import difference_interval


def as_table(rows: np.ndarray) -> dict[int, dict[int, float]]:
    return {s: {r: float(v) for r, v in enumerate(row)} for s, row in enumerate(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--boot", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{'teacher seeds':>13} {'student seeds':>13} {'sigma_teacher':>13} {'var. comp.':>10} {'width':>6} "
          f"{'paired t':>8} {'bootstrap':>9}   (coverage of 95% intervals over {args.reps} runs)")
    for n, m in ((2, 3), (3, 3)):
        for sigma_teacher in (0.0, 0.5, 1.0):
            covered = paired = boot = 0
            widths = []
            for _ in range(args.reps):
                student = rng.normal(0, 1.0, m)
                sides = [rng.normal(0, sigma_teacher, n)[:, None] + student[None, :] + rng.normal(0, 0.3, (1, m))
                         + rng.normal(0, 0.5, (n, m)) for _side in range(2)]
                result = difference_interval(as_table(sides[0]), as_table(sides[1]))
                covered += result["low"] <= 0 <= result["high"]
                widths.append(result["high"] - result["low"])
                d = sides[0].mean(0) - sides[1].mean(0)
                paired += abs(d.mean()) <= student_t.ppf(0.975, m - 1) * d.std(ddof=1) / math.sqrt(m)
                draws = [sides[0][rng.integers(0, n, n)][:, cols].mean()
                         - sides[1][rng.integers(0, n, n)][:, cols].mean()
                         for cols in (rng.integers(0, m, m) for _b in range(args.boot))]
                low, high = np.percentile(draws, [2.5, 97.5])
                boot += low <= 0 <= high
            print(f"{n:>13} {m:>13} {sigma_teacher:>13.1f} {covered / args.reps:>10.3f} {np.mean(widths):>6.2f} "
                  f"{paired / args.reps:>8.3f} {boot / args.reps:>9.3f}")


if __name__ == "__main__":
    main()
