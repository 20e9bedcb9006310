"""`kdlab train` under torchrun (2 CPU processes, gloo) ends with the weights of a single process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from kdlab.io import load_tensors

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _config(tmp_path: Path) -> Path:
    # an MLP without batch norm or dropout; 1024 training images = 16 steps of the global batch 64 per epoch
    cfg = {"data": {"name": "digits", "val_size": 200, "seed": 0, "train_subset": 1024},
           "model": {"name": "mlp", "width": 32, "depth": 1},
           "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
           "schedule": {"name": "cosine", "warmup_epochs": 1},
           "train": {"epochs": 3, "batch_size": 64, "seed": 1, "progress": False}}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _kdlab(args: list[str], nproc: int | None, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KDLAB_CACHE": str(tmp_path / "cache")}
    if nproc is None:
        cmd = [sys.executable, "-m", "kdlab.cli", *args]
    else:
        cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", "-m", "kdlab.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_ddp_two_processes_equal_single_process(tmp_path):
    config = _config(tmp_path)
    single = _kdlab(["-q", "train", str(config), "--out", str(tmp_path / "single")], None, tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = _kdlab(["-q", "train", str(config), "--out", str(tmp_path / "ddp")], 2, tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_tensors(tmp_path / "single" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "ddp" / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    # rank 0 alone wrote the run; the metrics were reduced over both ranks (loss of the whole global batch)
    single_metrics = (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()
    ddp_metrics = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(ddp_metrics) == len(single_metrics) == 3
    for s_line, d_line in zip(single_metrics, ddp_metrics):
        s, d = json.loads(s_line), json.loads(d_line)
        assert d["train_loss"] == pytest.approx(s["train_loss"], rel=1e-4)
        assert d["val_accuracy"] == pytest.approx(s["val_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_ddp_batch_not_divisible_is_a_config_error(tmp_path):
    config = _config(tmp_path)
    bad = _kdlab(["-q", "train", str(config), "--out", str(tmp_path / "o"), "--set", "train.batch_size=63"], 2,
                 tmp_path)
    assert bad.returncode != 0
    assert "train.batch_size=63" in bad.stderr and "2 processes" in bad.stderr
