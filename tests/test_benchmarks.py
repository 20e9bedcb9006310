"""The benchmark scripts run (on tiny sizes), and the torchdistill one explains itself where it cannot run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.skipif(importlib.util.find_spec("torchdistill") is not None, reason="torchdistill is installed here")
def test_torchdistill_benchmark_says_why_it_cannot_run_in_kdlabs_venv():
    proc = subprocess.run([sys.executable, str(BENCH / "bench_torchdistill.py"), "--repeats", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "import torchdistill failed with ModuleNotFoundError" in proc.stderr
    assert "make bench-torchdistill" in proc.stderr


def test_analysis_memory_benchmark_prints_its_ratio():
    proc = subprocess.run([sys.executable, str(BENCH / "bench_analysis_memory.py"), "--sizes", "1000,4000",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ratio_lines = [line for line in proc.stdout.splitlines() if line.startswith("streamed extra peak, N=4,000")]
    assert len(ratio_lines) == 1
    assert float(ratio_lines[0].split(":")[1].split()[0]) > 0
