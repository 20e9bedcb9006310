"""Read-only, full and filling-up filesystems under --out, on a private tmpfs (tests/cli/fs_scenarios.py runs inside a
new user + mount namespace; skipped where the machine does not allow one)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("fs_scenarios.py")
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*UNSHARE, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(), reason="cannot mount a private tmpfs (no user namespaces)")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """All three scenarios at once (each is a few interpreter starts)."""
    procs = {}
    for scenario in ("readonly", "full", "midrun"):
        work = tmp_path_factory.mktemp(scenario)
        procs[scenario] = subprocess.Popen([*UNSHARE, sys.executable, str(DRIVER), scenario, str(work)],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for scenario, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        out[scenario] = json.loads(stdout)
    return out


def _clean(run: dict) -> str:
    err = run["stderr"]
    assert "Traceback" not in err
    return err


def test_read_only_out_is_refused_before_anything(results):
    run = results["readonly"]["run"]
    assert run["code"] == 2 and "read-only filesystem" in _clean(run) and "choose another --out" in run["stderr"]


def test_full_out_is_refused_before_anything_and_left_untouched(results):
    run = results["full"]["run"]
    assert run["code"] == 2 and "0 bytes free" in _clean(run) and "/mnt/run" in run["stderr"]
    assert results["full"]["after"] == ["filler"]


def test_disk_full_mid_run_exits_cleanly_with_the_last_checkpoint_intact_and_resumes(results):
    r = results["midrun"]
    first = r["first"]
    assert first["code"] == 2
    assert "No space left on device" in _clean(first) and "rerun the same command" in first["stderr"]
    assert first["stderr"].strip().splitlines()[-1].startswith("kdlab: file error: ")
    assert r["latest"] == "epoch-0001" and r["latest_epoch_loaded"] == 1 and r["best_loads"] is True
    assert not any(Path(p).name.startswith(".") and p != ".kdlab.lock" for p in r["after_first"]), r["after_first"]
    second = r["second"]
    assert second["code"] == 0 and "resuming" in _clean(second) and r["summary_epochs"] == 3
    assert "checkpoints/epoch-0003/weights.safetensors" in r["after_second"]
