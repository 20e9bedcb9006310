"""Run-directory locks, stale temp files and checkpoint saving that never touches another process's files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from kdlab.config import parse_config
from kdlab.errors import RunLocked
from kdlab.recipe import run
from kdlab.runlock import LOCK_NAME, acquire_run_lock
from kdlab.train.checkpoint import save_checkpoint


def test_second_holder_is_refused_with_the_pid(tmp_path):
    with acquire_run_lock(tmp_path / "run", wait=False) as lock:
        assert lock.held and (tmp_path / "run" / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(RunLocked, match=f"in use by another process \\(pid {os.getpid()} on"):
            acquire_run_lock(tmp_path / "run", wait=False)
    acquire_run_lock(tmp_path / "run", wait=False).release()  # free again once released


def test_a_dead_processs_name_left_in_the_lock_file_is_not_reported_as_the_holder(tmp_path):
    """A crashed holder's PID stays in the file until the next holder overwrites it, just after taking the lock; a
    process refused in between must not name the dead one."""
    import fcntl
    import socket

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run_dir / LOCK_NAME).write_text(f"pid {dead.stdout.strip()} on {socket.gethostname()}\n")
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a holder that has not written its name yet
        with pytest.raises(RunLocked, match=r"in use by another process \(PID unknown\)"):
            acquire_run_lock(run_dir, wait=False)
    finally:
        os.close(fd)


def _wait_until_blocked(lock_file: Path, timeout: float = 30.0) -> None:
    """Until /proc/locks shows a process blocked on ``lock_file`` (so the test exercises the waiting path)."""
    inode = os.stat(lock_file).st_ino
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            blocked = [line for line in Path("/proc/locks").read_text().splitlines() if "->" in line]
        except OSError:
            time.sleep(0.5)  # no /proc/locks: give the waiter time instead
            return
        if any(line.split()[6].rsplit(":", 1)[-1] == str(inode) for line in blocked):
            return
        time.sleep(0.01)
    raise AssertionError("the waiter never blocked on the lock")


def test_waiter_gets_the_lock_when_the_holder_releases(tmp_path):
    first = acquire_run_lock(tmp_path / "run", wait=False)
    got = []
    waiter = threading.Thread(target=lambda: got.append(acquire_run_lock(tmp_path / "run", wait=True)))
    waiter.start()
    _wait_until_blocked(first.path)
    assert not got  # blocked while the first holds it
    first.release()
    waiter.join(timeout=10)
    assert len(got) == 1 and got[0].held
    got[0].release()


def test_waiter_starts_over_when_the_holder_abandons_the_directory_it_created(tmp_path):
    run_dir = tmp_path / "run"
    first = acquire_run_lock(run_dir, wait=False)
    assert first.created_dir
    got = []
    waiter = threading.Thread(target=lambda: got.append(acquire_run_lock(run_dir, wait=True)))
    waiter.start()
    _wait_until_blocked(first.path)
    first.abandon()  # a failed claim: lock file and the (otherwise empty) directory removed, then released
    waiter.join(timeout=10)
    lock = got[0]
    # the waiter did not keep a lock on the deleted inode: it holds the lock file that exists now
    assert lock.held and (run_dir / LOCK_NAME).exists()
    assert os.fstat(lock._fd).st_ino == os.stat(run_dir / LOCK_NAME).st_ino
    with pytest.raises(RunLocked):
        acquire_run_lock(run_dir, wait=False)
    lock.release()


def test_abandon_keeps_a_directory_that_holds_other_files(tmp_path):
    run_dir = tmp_path / "run"
    lock = acquire_run_lock(run_dir, wait=False)
    (run_dir / "notes.txt").write_text("mine")
    lock.abandon()
    assert (run_dir / "notes.txt").read_text() == "mine" and not (run_dir / LOCK_NAME).exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = f"from kdlab.runlock import acquire_run_lock; l = acquire_run_lock({str(tmp_path / 'run')!r}, wait=False); " \
           "print('locked', flush=True); import time; time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"pid {proc.pid}"):
            acquire_run_lock(tmp_path / "run", wait=False)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        acquire_run_lock(tmp_path / "run", wait=False).release()
    finally:
        proc.kill()


def test_checkpoint_saving_leaves_other_processes_temp_files_alone(tmp_path):
    foreign = tmp_path / "checkpoints" / ".epoch-0002.someone-else"
    foreign.mkdir(parents=True)
    (foreign / "weights.safetensors").write_bytes(b"partial")
    save_checkpoint(tmp_path, 0, {"w": torch.zeros(2)}, {"epoch": 0})
    save_checkpoint(tmp_path, 1, {"w": torch.ones(2)}, {"epoch": 1})
    assert (foreign / "weights.safetensors").read_bytes() == b"partial"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "epoch-0002"
    assert not (tmp_path / "checkpoints" / "epoch-0001").exists()


def test_resaving_an_epoch_replaces_it_and_latest_never_names_a_missing_directory(tmp_path):
    save_checkpoint(tmp_path, 0, {"w": torch.zeros(2)}, {"epoch": 0})
    save_checkpoint(tmp_path, 0, {"w": torch.ones(2)}, {"epoch": 0})  # a resumed run re-saving the same epoch
    from kdlab.io import load_tensors

    assert torch.equal(load_tensors(tmp_path / "checkpoints" / "epoch-0001" / "weights.safetensors")["w"],
                       torch.ones(2))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0001", "latest"]


TINY = {
    "data": {"name": "digits", "val_size": 200, "seed": 0},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "optim": {"name": "sgd", "lr": 0.1},
    "train": {"epochs": 40, "batch_size": 32, "seed": 1, "progress": False, "num_threads": 1},
}


def test_a_killed_run_resumes_and_its_temp_files_are_gone(tmp_path):
    """SIGKILL a training process after its first checkpoint, plant the temp files a kill at a write leaves, then
    resume: the run finishes and no temp file is left."""
    out = tmp_path / "run"
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    proc = subprocess.Popen([sys.executable, "-m", "kdlab.cli", "-q", "train", str(cfg_path), "--out", str(out)])
    try:
        deadline = time.time() + 120
        while not (out / "checkpoints" / "latest").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert (out / "checkpoints" / "latest").exists() and not (out / "summary.json").exists()
    planted = [out / ".metrics.jsonl.abc123.tmp", out / "checkpoints" / ".best.safetensors.x1.tmp",
               out / "checkpoints" / ".epoch-0099.q7"]
    planted[0].write_text("half")
    planted[1].write_bytes(b"half")
    planted[2].mkdir()
    (planted[2] / "weights.safetensors").write_bytes(b"half")
    summary = run(parse_config(TINY), out)
    assert summary["epochs"] == 40 and json.loads((out / "summary.json").read_text()) == summary
    assert not any(p.exists() for p in planted)
    dotted = [p.name for p in [*out.iterdir(), *(out / "checkpoints").iterdir()] if p.name.startswith(".")]
    assert dotted == [LOCK_NAME]
