"""Filesystem scenarios on a private tmpfs: run as root of a new user + mount namespace, prints one JSON result.

    unshare --user --map-root-user --mount python tests/cli/fs_scenarios.py SCENARIO WORKDIR

The tmpfs is mounted on WORKDIR/mnt inside the namespace only (nothing changes for the rest of the machine) and
disappears with the process, so every check happens here; test_filesystems.py asserts on the printed result.

- ``readonly``: --out on a read-only filesystem.
- ``full``: --out on a filesystem that is already full.
- ``midrun``: a filesystem big enough for the first checkpoint but not for the second: the run stops with a clean
  message, its last checkpoint intact; after the filesystem grows, the same command resumes and finishes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

CONFIG = {
    "data": {"name": "digits", "val_size": 200, "seed": 0},
    "model": {"name": "mlp", "width": 256, "depth": 2},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "train": {"epochs": 3, "batch_size": 64, "seed": 0, "progress": False, "num_threads": 1},
}


def mount(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)


def kdlab(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "kdlab.cli", *args], capture_output=True, text=True, timeout=600)
    return {"code": proc.returncode, "stderr": proc.stderr, "stdout": proc.stdout}


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def student_bytes() -> int:
    from kdlab.models import create_model

    model = create_model("mlp", 10, (64,), width=256, depth=2)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def main() -> None:
    scenario, work = sys.argv[1], Path(sys.argv[2])
    cfg = work / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    mnt = work / "mnt"
    result: dict = {"scenario": scenario}
    if scenario == "readonly":
        mount(mnt, "ro,size=1m")
        result["run"] = kdlab("train", str(cfg), "--out", str(mnt / "run"))
        result["after"] = listing(mnt)
    elif scenario == "full":
        mount(mnt, "size=256k")
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        result["run"] = kdlab("train", str(cfg), "--out", str(mnt / "run"))
        result["after"] = listing(mnt)
    elif scenario == "midrun":
        p = student_bytes()
        # the pre-run check asks for 5P + 64 KiB; epoch 1 leaves ~4P on disk; writing epoch 2's checkpoint needs ~6P
        size_kib = (5 * p + 65536 + p // 2) // 1024
        mount(mnt, f"size={size_kib}k")
        run_dir = mnt / "run"
        result["param_bytes"], result["size_kib"] = p, size_kib
        result["first"] = kdlab("train", str(cfg), "--out", str(run_dir))
        result["after_first"] = listing(run_dir)
        latest = (run_dir / "checkpoints" / "latest")
        result["latest"] = latest.read_text().strip() if latest.exists() else None
        from kdlab.models import load_model_weights
        from kdlab.train import load_latest_checkpoint

        try:
            tensors, state = load_latest_checkpoint(run_dir)
            result["latest_epoch_loaded"] = state["epoch"] + 1
            result["best_loads"] = load_model_weights(run_dir / "checkpoints" / "best.safetensors") is not None
        except Exception as exc:  # reported, and the test fails on it
            result["load_error"] = f"{type(exc).__name__}: {exc}"
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        result["second"] = kdlab("train", str(cfg), "--out", str(run_dir))
        result["after_second"] = listing(run_dir)
        summary = run_dir / "summary.json"
        result["summary_epochs"] = json.loads(summary.read_text())["epochs"] if summary.exists() else None
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
