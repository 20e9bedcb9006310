"""Artefacts: byte-reproducible safetensors, modes that follow the umask, refusal of files that are not safetensors."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from kdlab.config import parse_config
from kdlab.errors import ConfigError
from kdlab.io import check_output_dir, load_tensors, read_safetensors_metadata, save_tensors
from kdlab.recipe import run

TINY = {
    "data": {"name": "digits", "val_size": 200, "seed": 0},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2, "batch_size": 64, "seed": 5, "progress": False, "num_threads": 1, "deterministic": True,
              "keep_epochs": [1]},
}


def test_metadata_order_does_not_change_the_bytes(tmp_path):
    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, 2, dtype=torch.float64), "c": torch.zeros(5, dtype=torch.int8)}
    forward = {f"k{i}": str(i) for i in range(20)}
    backward = dict(reversed(list(forward.items())))
    first = save_tensors(tmp_path / "one.safetensors", tensors, forward).read_bytes()
    second = save_tensors(tmp_path / "two.safetensors", dict(reversed(list(tensors.items()))), backward).read_bytes()
    assert first == second
    header_len = int.from_bytes(first[:8], "little")
    assert header_len % 8 == 0
    header = json.loads(first[8:8 + header_len])
    assert list(header["__metadata__"]) == sorted(forward)
    # still a valid safetensors file for the library itself
    with safe_open(str(tmp_path / "one.safetensors"), framework="pt") as f:
        assert f.metadata() == forward
        assert torch.equal(f.get_tensor("a"), tensors["a"])
    assert read_safetensors_metadata(tmp_path / "two.safetensors") == forward
    assert all(torch.equal(load_tensors(tmp_path / "two.safetensors")[k], v) for k, v in tensors.items())


def _weight_hashes(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*.safetensors"))}


def test_identical_runs_in_two_processes_give_byte_identical_weight_files(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    procs = [subprocess.Popen([sys.executable, "-m", "kdlab.cli", "-q", "train", str(cfg), "--out",
                               str(tmp_path / name)], stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    a, b = _weight_hashes(tmp_path / "a"), _weight_hashes(tmp_path / "b")
    assert sorted(a) == ["checkpoints/best.safetensors", "checkpoints/epoch-0001/weights.safetensors",
                         "checkpoints/epoch-0002/weights.safetensors", "checkpoints/last.safetensors"]
    assert a == b


def test_run_files_follow_the_umask(tmp_path):
    previous = os.umask(0o002)
    try:
        run(parse_config(TINY), tmp_path / "run")
    finally:
        os.umask(previous)
    for path in [tmp_path / "run", *(tmp_path / "run").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o775 if path.is_dir() else 0o664), (path, oct(mode))


@pytest.mark.parametrize("payload", [pickle.dumps({"w": [1.0]}, protocol=2), pickle.dumps([1], protocol=5)])
def test_a_pickle_is_refused_before_any_byte_is_deserialised(tmp_path, payload):
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    with pytest.raises(ConfigError, match="is a Python pickle, not a safetensors file; it was not loaded"):
        load_tensors(path)


def test_output_dir_checks_name_the_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(tmp_path / "file" / "run")
    with pytest.raises(ConfigError, match=r"bytes free and the run needs at least"):
        check_output_dir(tmp_path / "run", need_bytes=2**62)
    check_output_dir(tmp_path / "new" / "run", need_bytes=1)
    assert not (tmp_path / "new").exists()  # checking creates nothing
