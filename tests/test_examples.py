"""The examples run as shipped, at a tiny size, on real Fashion-MNIST (fetched into kdlab's data cache if absent)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdlab.cli import main
from kdlab.data import fetch_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers (kdlab[hf]) not installed")
def test_the_hf_vit_example_distils_into_a_cnn_through_the_cli(tmp_path):
    fetch_fashion_mnist()
    tiny = ["--set", "data.train_subset=200", "--set", "data.val_size=200", "--set", "train.epochs=1",
            "--set", "train.progress=false"]
    here = EXAMPLES / "hf_vit_fashion_mnist"
    assert main(["-q", "train", str(here / "vit_teacher.yaml"), "--out", str(tmp_path / "vit"), *tiny]) == 0
    assert (tmp_path / "vit" / "tensorboard").is_dir() and (tmp_path / "vit" / "metrics.csv").is_file()
    assert main(["-q", "distill", str(here / "cnn_student.yaml"), "--out", str(tmp_path / "cnn"), *tiny,
                 "--set", f"teacher.run={tmp_path / 'vit'}"]) == 0
    assert main(["eval", str(tmp_path / "cnn")]) == 0
    script = (here / "run.sh").read_text()  # the script runs these same commands
    assert "kdlab train \"$here/vit_teacher.yaml\"" in script and "kdlab distill \"$here/cnn_student.yaml\"" in script


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path):
    fetch_fashion_mnist()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / "own_model_api.py"), "--out-dir", str(tmp_path),
                           "--epochs", "1", "--train-subset", "300"], capture_output=True, text=True, timeout=600,
                          env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher test accuracy" in done.stdout and "student test accuracy" in done.stdout
    assert (tmp_path / "student" / "checkpoints" / "best.safetensors").is_file()
