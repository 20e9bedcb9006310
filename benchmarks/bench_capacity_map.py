"""Measurements behind the capacity-map design (docs/studies/capacity-map.md): the synthetic task's difficulty and
the throughput of representative runs on this machine.

difficulty: trains a linear model and MLPs of growing width on ``hierarchical_mixture`` (defaults unless overridden)
and prints, on the test set, Bayes accuracy (argmax of the exact posterior), each model's accuracy, and its distance
to the Bayes posterior next to its dark knowledge (kdlab.analysis.bayes_distance).

throughput: times a few epochs of every teacher of the declared grid (kdlab.studies.capacity_map_grid) and one whole
KD run of every student size at every labelled-set size, through the same ``recipe.run`` the study uses, one thread
each; prints seconds per teacher epoch and per student run, the load average before and after (the machine is
shared), and the grid's budget in core-seconds from those timings.

quick: runs the study's quick preset (``kdlab study capacity-map --preset quick``) end to end in a fresh run store
and prints its wall time, the runs it trained and their mean core-seconds by role; the full map's time is projected
from ``throughput`` (the quick preset's runs are far smaller than the map's).

Usage:
  python benchmarks/bench_capacity_map.py difficulty [--epochs 30] [--widths 16,64,256,1024] [--set key=value ...]
  python benchmarks/bench_capacity_map.py throughput [--epochs 2] [--preset full|quick] [--only fashion_mnist/mlp]
  python benchmarks/bench_capacity_map.py quick [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from kdlab import recipe
from kdlab.analysis.bayes_distance import compare_with_bayes
from kdlab.config import RunConfig
from kdlab.data import load_dataset
from kdlab.models import load_model_weights
from kdlab.studies import run_study
from kdlab.studies.capacity_map import CAPACITY_MAP
from kdlab.studies.capacity_map_grid import PRESETS, FamilyGrid, MapGrid, budget, run_counts


def run_config(data: dict[str, Any], model: dict[str, Any], epochs: int, *, loss: dict | None = None,
               teacher_run: str | None = None, grid: MapGrid = PRESETS["full"]) -> RunConfig:
    """One run with the map's shared recipe (grid.optim, grid.schedule, grid.batch_size), one thread."""
    return RunConfig.model_validate({
        "data": data, "model": model, "loss": loss or {"name": "ce"},
        "teacher": {"run": teacher_run} if teacher_run else None,
        "optim": dict(grid.optim), "schedule": dict(grid.schedule),
        "train": {"epochs": epochs, "batch_size": grid.batch_size, "num_threads": 1, "progress": False,
                  "checkpoint_every": epochs}})


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def difficulty(args: argparse.Namespace) -> None:
    options = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    data_cfg = {"name": "hierarchical_mixture", "val_size": args.val_size, "options": options}
    splits = load_dataset("hierarchical_mixture", val_size=args.val_size, **options)
    mixture = splits.source_info["mixture"]
    x, y = splits.test.x, splits.test.y
    bayes_logits = mixture.log_joint(x)
    bayes_accuracy = float((bayes_logits.argmax(1) == y).double().mean())
    super_accuracy = float((mixture.superclass_posterior(x).argmax(1) == mixture.superclass_of[y]).double().mean())
    print(f"hierarchical_mixture {json.dumps(mixture.spec())}, n_train={len(splits.train)}, n_test={len(y)}")
    print(f"  Bayes accuracy (test set) {bayes_accuracy:.4f}; Bayes error estimate (100k fresh samples) "
          f"{mixture.bayes_error_estimate():.4f}; Bayes super-class accuracy {super_accuracy:.4f}")
    models = [("linear", {"name": "mlp", "depth": 0})] + [
        (f"mlp-{w}", {"name": "mlp", "width": w, "depth": 2}) for w in args.widths]
    print(f"  {'model':<10} {'params':>9} {'train':>6} {f'val@{args.early_epoch}':>7} {'test acc':>8} {'- Bayes':>8} "
          f"{'KL(p*||q)':>9} {'TV':>6} {'nonGT KL':>8} {'DS/DS* t4':>9} {'aff rho':>7} {'in-super':>8} {'sec':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models:
            started = time.perf_counter()
            summary = recipe.run(run_config(data_cfg, model, args.epochs), Path(tmp) / label)
            seconds = time.perf_counter() - started
            net = load_model_weights(summary["weights"]).eval()
            with torch.inference_mode():
                logits = torch.cat([net(x[i:i + 4096]) for i in range(0, len(x), 4096)]).double()
            c = compare_with_bayes(logits, bayes_logits, y, temperatures=(4.0,), superclass_of=mixture.superclass_of)
            acc = c["accuracy"]["model"]
            with open(Path(tmp) / label / "metrics.jsonl") as f:
                records = [json.loads(line) for line in f]
            early = records[min(args.early_epoch, len(records)) - 1]["val_accuracy"]
            print(f"  {label:<10} {summary['params']:>9,} {records[-1]['train_accuracy']:>6.3f} {early:>7.4f} "
                  f"{acc:>8.4f} {acc - bayes_accuracy:>+8.4f} "
                  f"{c['distance']['kl']:>9.4f} {c['distance']['tv']:>6.3f} {c['distance']['nongt_kl']:>8.4f} "
                  f"{c['derived_std']['4.0']['ratio']:>9.3f} {c['affinity']['spearman']:>7.3f} "
                  f"{c['in_superclass_share']['model']:>8.3f} {seconds:>6.1f}")
        print(f"  Bayes posterior's own: in-super share {c['in_superclass_share']['bayes']:.3f}, derived std at tau 4 "
              f"{c['derived_std']['4.0']['bayes']:.5f}")


def family_data(grid: MapGrid, family: FamilyGrid, train_subset: int | None) -> dict[str, Any]:
    """The data section of one stage of ``family``: the dataset's section, the family's augmentation, a subset."""
    return {**grid.datasets[family.dataset], **family.augment, "train_subset": train_subset}


def throughput(args: argparse.Namespace) -> None:
    grid = PRESETS[args.preset]
    families = [f for f in grid.families if not args.only or f"{f.dataset}/{f.family}" in args.only]
    print(f"grid {grid.name!r}; load average before: {os.getloadavg()}, {os.cpu_count()} CPUs, 1 thread per run")
    teacher_seconds: dict[tuple[str, str, str], float] = {}
    student_seconds: dict[tuple[str, str, int], float] = {}
    for f in families:  # data generation and file reading happen once per worker: keep them out of the timings
        data = family_data(grid, f, None)
        load_dataset(data["name"], val_size=data["val_size"], seed=data["seed"], **data.get("options", {}))
    with tempfile.TemporaryDirectory() as tmp:
        for f in families:
            largest = None
            for t in f.teachers:
                run_dir = Path(tmp) / f"{f.dataset}-{f.family}-{t.label}"
                started = time.perf_counter()
                summary = recipe.run(run_config(family_data(grid, f, f.teacher_train_subset), dict(t.model),
                                                args.epochs, grid=grid), run_dir)
                wall = time.perf_counter() - started
                # wall time per epoch, the data loading and test pass included: an upper bound for longer runs
                teacher_seconds[(f.dataset, f.family, t.label)] = wall / args.epochs
                largest = run_dir
                print(f"  teacher {f.dataset}/{f.family}/{t.label:<15} {summary['params']:>9,} params, "
                      f"{summary['num_train']:>6} images: {wall / args.epochs:7.2f} s/epoch (wall, {args.epochs} "
                      f"epochs)", flush=True)
            for labels in f.label_sizes:
                runs = []
                for st in f.students:
                    started = time.perf_counter()
                    recipe.run(run_config(family_data(grid, f, labels), dict(st.model), f.student_epochs,
                                          loss={"name": "kd", "temperature": 4.0, "alpha": grid.kd_alpha},
                                          teacher_run=str(largest), grid=grid),
                               Path(tmp) / f"student-{f.dataset}-{f.family}-{labels}-{st.label}")
                    runs.append(time.perf_counter() - started)
                student_seconds[(f.dataset, f.family, labels)] = sum(runs) / len(runs)
                print(f"  KD students {f.dataset}/{f.family}, {labels} labels, {f.student_epochs} epochs, from the "
                      f"largest teacher: {', '.join(f'{st.label} {r:.1f} s' for st, r in zip(f.students, runs))} "
                      f"(mean {sum(runs) / len(runs):.1f} s)", flush=True)
    print(f"load average after: {os.getloadavg()}")
    if len(families) == len(grid.families):
        counts, need = run_counts(grid), budget(grid, teacher_seconds, student_seconds)
        print(f"runs: {counts}")
        print(f"core-seconds: teachers {need['teachers']:,.0f}, students {need['students']:,.0f}, total "
              f"{need['total']:,.0f} = {need['total'] / 3600:.1f} core-hours = {need['total'] / 7200:.1f} h on 2 "
              "workers (before remedies)")


def quick(args: argparse.Namespace) -> None:
    """The study's quick preset end to end in a fresh store: wall time and core-seconds per run by role."""
    executor = ["executor.name=pool", f"executor.workers={args.workers}"] if args.workers > 1 else []
    print(f"quick preset, {args.workers} worker(s); load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        results = run_study(CAPACITY_MAP, out=Path(tmp), preset="quick", overrides=executor, progress=False)
        wall = time.perf_counter() - started
    spent = results["budget"]["core_seconds"]["by_role"]
    planned = run_counts(PRESETS["quick"])
    counts = {"teacher": planned["teachers"], "kd": planned["kd_students"], "ce": planned["ce_students"]}
    print(f"quick preset: {wall:.1f} s wall in this process ({results['runs_trained']} runs trained; the study's own "
          f"clock {results['seconds']:.1f} s); load average after: {os.getloadavg()}")
    print("core-seconds per run by role: " + ", ".join(f"{role} {seconds / counts[role]:.2f} s"
                                                       for role, seconds in spent.items() if role in counts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    d = sub.add_parser("difficulty")
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--early-epoch", type=int, default=5, help="also print the validation accuracy after this epoch")
    d.add_argument("--val-size", type=int, default=5000)
    d.add_argument("--widths", type=lambda s: [int(w) for w in s.split(",") if w], default=[16, 64, 256, 1024])
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a hierarchical_mixture option, e.g. --set dim=12 (repeatable)")
    t = sub.add_parser("throughput")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--preset", choices=sorted(PRESETS), default="full")
    t.add_argument("--only", type=lambda s: s.split(","), default=None,
                   help="comma-separated dataset/family, e.g. hierarchical_mixture/mlp")
    q = sub.add_parser("quick")
    q.add_argument("--workers", type=int, default=1, help="pool workers (1: the local executor)")
    args = parser.parse_args()
    {"difficulty": difficulty, "throughput": throughput, "quick": quick}[args.part](args)


if __name__ == "__main__":
    main()
