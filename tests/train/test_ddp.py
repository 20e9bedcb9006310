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


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_ddp_distillation_shares_one_teacher_cache_and_resumes(tmp_path):
    """KD under torchrun: rank 0 builds the teacher-output cache once, both ranks read it, the student equals the
    single-process one; a DDP run cut after epoch 2 and restarted ends with the weights of the uninterrupted one."""
    teacher_cfg = _config(tmp_path)
    teacher = _kdlab(["-q", "train", str(teacher_cfg), "--out", str(tmp_path / "teacher")], None, tmp_path)
    assert teacher.returncode == 0, teacher.stderr
    cfg = yaml.safe_load(teacher_cfg.read_text())
    cfg["model"] = {"name": "mlp", "width": 16, "depth": 1}
    cfg["teacher"] = {"run": str(tmp_path / "teacher")}
    cfg["loss"] = {"name": "kd", "temperature": 4, "alpha": 0.9}
    cfg["train"]["keep_epochs"] = [2]
    config = tmp_path / "kd.yaml"
    config.write_text(yaml.safe_dump(cfg))
    single = _kdlab(["-q", "distill", str(config), "--out", str(tmp_path / "single")], None, tmp_path)
    assert single.returncode == 0, single.stderr
    (cache,) = (tmp_path / "cache").glob("*.safetensors")  # the teacher's outputs, cached once
    built = cache.stat().st_mtime_ns
    ddp = _kdlab(["-q", "distill", str(config), "--out", str(tmp_path / "ddp")], 2, tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert list((tmp_path / "cache").glob("*.safetensors")) == [cache] and cache.stat().st_mtime_ns == built
    a = load_tensors(tmp_path / "single" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "ddp" / "checkpoints" / "last.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
    # cut the DDP run back to its epoch-2 checkpoint, as if both ranks had died during epoch 3, and restart it
    run_dir = tmp_path / "ddp"
    before = (run_dir / "metrics.jsonl").read_text().splitlines()
    (run_dir / "summary.json").unlink()
    (run_dir / "checkpoints" / "latest").write_text("epoch-0002\n")
    resumed = _kdlab(["-q", "distill", str(config), "--out", str(run_dir)], 2, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    c = load_tensors(run_dir / "checkpoints" / "last.safetensors")
    for key in b:
        assert torch.equal(b[key], c[key]), key
    after = (run_dir / "metrics.jsonl").read_text().splitlines()
    # epochs 1-2 were not trained again (their records, timings included, are the original ones); epoch 3 was
    assert after[:2] == before[:2] and len(after) == 3 and after[2] != before[2]


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
def test_ddp_streams_an_image_folder_in_shards_and_equals_one_process(tmp_path, image_folder):
    """data.streaming under torchrun: each rank decodes its DistributedSampler-equivalent shard from disk; the
    result equals one process with the same global batch (KD from a teacher whose outputs rank 0 caches on disk)."""
    # 12 training images: 2 global batches of 6, or 2 batches of 3 on each of 2 ranks (no padding sample)
    data = {"name": "image_folder", "data_dir": str(image_folder), "val_size": 6, "streaming": True,
            "options": {"channels": 1}}
    base = {"data": data, "model": {"name": "mlp", "width": 16, "depth": 1},
            "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
            "train": {"epochs": 2, "batch_size": 6, "seed": 1, "progress": False}}
    teacher_cfg = tmp_path / "teacher.yaml"
    teacher_cfg.write_text(yaml.safe_dump(base))
    assert _kdlab(["-q", "train", str(teacher_cfg), "--out", str(tmp_path / "teacher")], None, tmp_path).returncode == 0
    kd = {**base, "model": {"name": "mlp", "width": 8, "depth": 1}, "teacher": {"run": str(tmp_path / "teacher")},
          "loss": {"name": "kd", "temperature": 2}}
    config = tmp_path / "kd.yaml"
    config.write_text(yaml.safe_dump(kd))
    single = _kdlab(["-q", "distill", str(config), "--out", str(tmp_path / "single")], None, tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = _kdlab(["-q", "distill", str(config), "--out", str(tmp_path / "ddp")], 2, tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert len(list((tmp_path / "cache").glob("*.npy.d"))) == 1  # one memory-mapped cache, built once
    a = load_tensors(tmp_path / "single" / "checkpoints" / "last.safetensors")
    b = load_tensors(tmp_path / "ddp" / "checkpoints" / "last.safetensors")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), key
