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


def test_capacity_map_benchmark_prints_bayes_and_model_rows() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "bench_capacity_map.py"), "difficulty", "--epochs", "2",
                           "--widths", "16", "--val-size", "300", "--set", "n_train=2000", "--set", "n_test=500"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    bayes = [line for line in proc.stdout.splitlines() if "Bayes accuracy (test set)" in line]
    assert len(bayes) == 1 and 0.5 < float(bayes[0].split("(test set)")[1].split(";")[0]) < 1.0
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.startswith("  linear")
            or line.startswith("  mlp-16")}
    assert set(rows) == {"linear", "mlp-16"}
    assert 0.0 <= float(rows["linear"][4]) <= 1.0  # test accuracy column


def test_loop_benchmark_prints_before_and_after_ratios_for_both_students():
    proc = subprocess.run([sys.executable, str(BENCH / "bench_loop.py"), "--dataset", "digits", "--epochs", "1",
                           "--repeats", "1", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ratios = {line.split("=")[0].strip(): float(line.split("=")[1].split()[0])
              for line in proc.stdout.splitlines() if " = " in line}
    assert sorted(ratios) == sorted(f"{model} {loop:<6} {name}" for model in ("mlp", "cnn")
                                    for loop in ("before", "kdlab")
                                    for name in ("(a) KD epoch / CE epoch", "(b) loop / hand-written loop"))
    assert all(value > 0 for value in ratios.values())


def test_streaming_benchmark_prints_epoch_time_and_memory_ratios():
    proc = subprocess.run([sys.executable, str(BENCH / "bench_streaming.py"), "--images", "200", "--epochs", "1",
                           "--big-images", "600", "--cap-mb", "16"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ratios = [line for line in lines if line.strip().startswith("epoch time streamed")]
    assert len(ratios) == 2 and all(float(line.split("=")[1]) > 0 for line in ratios)
    memory = [line for line in lines if "streamed extra peak / cap" in line]
    assert len(memory) == 1 and float(memory[0].split("=")[1].split()[0]) >= 0
