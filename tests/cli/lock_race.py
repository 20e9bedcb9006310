"""Two processes racing on one run directory or one run store: the harness behind test_concurrency.py, and a script.

    .venv/bin/python tests/cli/lock_race.py --trials 100

Two long-lived worker processes (kdlab imported once) receive each trial's command at the same moment over their
stdin and run it in-process (``kdlab.cli.main`` or ``RunStore.run``), so a trial costs a tiny training, not an
interpreter start. Three kinds of trial, each checked for what the run lock promises:

- ``different``: two configs (seeds 2 and 3) on one ``--out``, no ``--wait``. Exactly one exits 0; the other exits 2,
  refused as "in use by ... pid N" (it overlapped) or "different config" (it came after). Never a mixed run: the
  config, the weights' recorded digest and the summary all belong to the winner.
- ``same-wait``: one config twice on one ``--out``, both with ``--wait``. Both exit 0, one trains and the other
  reuses its run (no duplicate training), and the run is consistent.
- ``store``: two store users run the same three configs in opposite orders on one store. Each run is trained once
  (trained counts sum to 3), every run directory is consistent.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE: dict[str, Any] = {
    "data": {"name": "digits", "val_size": 200, "seed": 0},
    "model": {"name": "mlp", "width": 16, "depth": 1},
    "optim": {"name": "sgd", "lr": 0.1},
    "train": {"epochs": 2, "batch_size": 64, "seed": 2, "progress": False},
}


# ------------------------------------------------------------------------------------------------ worker side


def _worker() -> None:
    """Serve commands from stdin, one JSON object a line, answering on stdout."""
    import torch

    from kdlab.cli import main
    from kdlab.config import parse_config
    from kdlab.store import RunStore

    torch.set_num_threads(1)  # two workers on a shared machine: OpenMP spinning made tiny runs 15x slower
    channel = sys.stdout
    log_buffer = io.StringIO()
    handler = logging.StreamHandler(log_buffer)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "exit":
            break
        time.sleep(cmd.get("delay", 0.0))
        log_buffer.seek(0)
        log_buffer.truncate()
        err, out = io.StringIO(), io.StringIO()
        reply: dict[str, Any] = {"pid": os.getpid()}
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            if cmd["op"] == "cli":
                reply["code"] = main(cmd["argv"])
            else:
                store = RunStore(cmd["root"])
                reply["seeds"] = [store.run(parse_config(c), progress=False)["seed"] for c in cmd["cfgs"]]
                reply["trained"], reply["reused"] = store.trained, store.reused
        reply["err"] = err.getvalue() + log_buffer.getvalue()
        channel.write(json.dumps(reply) + "\n")
        channel.flush()


# ------------------------------------------------------------------------------------------------ driver side


class WorkerPair:
    """Two worker processes; ``both(a, b)`` sends one command to each at the same moment and returns both replies."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs = [subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]

    def both(self, a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
        lines = [json.dumps(a) + "\n", json.dumps(b) + "\n"]
        for proc, line in zip(self.procs, lines):
            proc.stdin.write(line)
        for proc in self.procs:
            proc.stdin.flush()
        replies = []
        for proc in self.procs:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {proc.pid} died (exit {proc.poll()})")
            replies.append(json.loads(line))
        return replies

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=60)

    def __enter__(self) -> "WorkerPair":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_consistency(run_dir: Path) -> tuple[bool, int | None, str]:
    """Whether one config made everything in ``run_dir``: config.yaml, summary.json, best/last weights' metadata and
    the kept checkpoint all carry that config's digest (and the summary its seed). Returns (ok, seed, reason)."""
    from kdlab.config import parse_config, read_yaml
    from kdlab.io import read_safetensors_metadata

    cfg = parse_config(read_yaml(run_dir / "config.yaml"))
    digest = cfg.digest()
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary["config_digest"] != digest or summary["seed"] != cfg.train.seed:
        return False, cfg.train.seed, f"summary is seed {summary['seed']}, config seed {cfg.train.seed}"
    for name in ("best", "last"):
        meta = read_safetensors_metadata(run_dir / "checkpoints" / f"{name}.safetensors")
        if meta.get("config_digest") != digest:
            return False, cfg.train.seed, f"{name}.safetensors belongs to another config"
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    if [m["epoch"] for m in metrics] != list(range(1, cfg.train.epochs + 1)):
        return False, cfg.train.seed, f"metrics.jsonl epochs {[m['epoch'] for m in metrics]}"
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    if leftovers:
        return False, cfg.train.seed, f"temp files left: {leftovers}"
    return True, cfg.train.seed, ""


def _write_config(path: Path, **train: Any) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({**BASE, "train": {**BASE["train"], **train}}))
    return path


def trial_different(pair: WorkerPair, tmp: Path, rng: random.Random) -> str:
    out = tmp / "out"
    a, b = _write_config(tmp / "a.yaml", seed=2), _write_config(tmp / "b.yaml", seed=3)
    delays = [0.0, rng.choice([0.0, 0.0, 0.005, 0.02, 0.05])]
    rng.shuffle(delays)
    replies = pair.both({"op": "cli", "argv": ["train", str(a), "--out", str(out)], "delay": delays[0]},
                        {"op": "cli", "argv": ["train", str(b), "--out", str(out)], "delay": delays[1]})
    codes = sorted(r["code"] for r in replies)
    if codes != [0, 2]:
        return f"FAIL codes {codes}: {[r['err'][-300:] for r in replies]}"
    winner, loser = (replies[0], replies[1]) if replies[0]["code"] == 0 else (replies[1], replies[0])
    ok, seed, reason = run_consistency(out)
    if not ok:
        return f"FAIL mixed run: {reason}"
    if seed != (2 if winner is replies[0] else 3):
        return f"FAIL the run is seed {seed} but the other process won"
    if f"pid {winner['pid']}" in loser["err"]:
        return "refused: in use (pid named)"
    if "different config" in loser["err"]:
        return "refused: different config"
    return f"FAIL unexplained refusal: {loser['err'][-300:]}"


def trial_same_wait(pair: WorkerPair, tmp: Path, rng: random.Random) -> str:
    out = tmp / "out"
    a = _write_config(tmp / "a.yaml", seed=4)
    cmd = {"op": "cli", "argv": ["train", str(a), "--out", str(out), "--wait"]}
    replies = pair.both({**cmd, "delay": 0.0}, {**cmd, "delay": rng.choice([0.0, 0.01])})
    if [r["code"] for r in replies] != [0, 0]:
        return f"FAIL codes {[r['code'] for r in replies]}: {[r['err'][-300:] for r in replies]}"
    reused = [r for r in replies if "reusing it" in r["err"]]
    if len(reused) != 1:
        return f"FAIL {2 - len(reused)} processes trained the run"
    ok, _, reason = run_consistency(out)
    if not ok:
        return f"FAIL inconsistent run: {reason}"
    waited = "waiting for" in reused[0]["err"]
    return "second waited, then reused" if waited else "second found it finished, reused"


def trial_store(pair: WorkerPair, tmp: Path, rng: random.Random) -> str:
    from kdlab.config import parse_config

    cfgs = [{**BASE, "train": {**BASE["train"], "seed": s}} for s in (10, 11, 12)]
    root = tmp / "store"
    replies = pair.both({"op": "store", "root": str(root), "cfgs": cfgs},
                        {"op": "store", "root": str(root), "cfgs": cfgs[::-1], "delay": rng.choice([0.0, 0.01])})
    trained = sum(r["trained"] for r in replies)
    if trained != 3 or sum(r["reused"] for r in replies) != 3:
        return f"FAIL trained {trained}, reused {sum(r['reused'] for r in replies)} (want 3 and 3)"
    if replies[0]["seeds"] != [10, 11, 12] or replies[1]["seeds"] != [12, 11, 10]:
        return f"FAIL summaries of the wrong runs: {replies[0]['seeds']} {replies[1]['seeds']}"
    for cfg in cfgs:
        ok, _, reason = run_consistency(root / parse_config(cfg).digest()[:16])
        if not ok:
            return f"FAIL inconsistent store run: {reason}"
    return f"each run trained once ({replies[0]['trained']}/{replies[1]['trained']} split)"


TRIALS = {"different": trial_different, "same-wait": trial_same_wait, "store": trial_store}


def run_trials(kinds: list[str], trials: int, seed: int = 0) -> dict[str, collections.Counter]:
    """``trials`` trials of each kind; returns the outcome counts per kind (outcomes starting with FAIL are bugs)."""
    rng = random.Random(seed)
    counts = {kind: collections.Counter() for kind in kinds}
    with WorkerPair() as pair:
        for kind in kinds:
            for _ in range(trials):
                tmp = Path(tempfile.mkdtemp(prefix=f"kdlab-race-{kind}-"))
                try:
                    counts[kind][TRIALS[kind](pair, tmp, rng)] += 1
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=100, help="trials of each kind")
    parser.add_argument("--kinds", default="different,same-wait,store")
    args = parser.parse_args()
    if args.worker:
        _worker()
        return
    started = time.perf_counter()
    counts = run_trials(args.kinds.split(","), args.trials)
    failures = 0
    for kind, outcomes in counts.items():
        print(f"{kind}: {sum(outcomes.values())} trials")
        for outcome, n in outcomes.most_common():
            print(f"  {n:4d}  {outcome}")
            failures += n if outcome.startswith("FAIL") else 0
    print(f"failures: {failures}  ({time.perf_counter() - started:.0f} s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
