"""kdlab vs torchdistill on the same KD setting: training samples per second and peak memory, as ratios.

Same teacher and student modules (kdlab's model builders, one seed, so identical weights), same Fashion-MNIST
training tensors, batch 128 (the last, short batch included), SGD (lr 0.05, momentum 0.9, Nesterov, no weight decay), constant LR,
Hinton KD at T = 4 with weight 0.9 on the soft term (kdlab ``alpha=0.9``; torchdistill ``KDLoss`` with ``alpha=0.1``,
its alpha weights the CE term), one epoch, then both evaluate the student on the validation and test splits.
Each framework is used the way its documentation shows: kdlab through ``kdlab.recipe.run`` (the API behind
``kdlab distill``), torchdistill through its ``DistillationBox`` with the training loop of its examples
(``pre_epoch_process`` / ``forward_process`` / ``post_forward_process``) over its data loader.

Three variants per setting, interleaved over repeats, each in a fresh subprocess (so peak memory is per framework):
  kdlab-live    the teacher runs on every batch (``teacher.cache: false``): the same work as torchdistill
  torchdistill  the teacher runs on every batch (torchdistill's default)
  kdlab-cached  kdlab's default: the teacher's logits computed once and reused (its one-off cost printed apart)
Samples/s is training samples over the training loop's wall time (kdlab: ``epoch_seconds`` in metrics.jsonl, which
times the same loop). Peak memory is the process's resident high-water mark during the run (the epoch and the two
evaluations) above its resident size just before: Linux's VmHWM, reset by writing 5 to /proc/self/clear_refs.

torchdistill is never installed in kdlab's venv or CI: this script must run in its own venv holding both packages
(on the same torch, so the ratio compares frameworks, not torch builds). ``make bench-torchdistill`` creates
``.venv-torchdistill`` with ``torch==2.14.1 torchvision==0.29.1 torchdistill==1.1.5`` (about 5.7 GB: PyPI's
torchvision needs that CUDA build of torch) plus kdlab, and runs this script. Where torchdistill cannot be imported,
the script prints why and exits with status 2.
Usage: python benchmarks/bench_torchdistill.py [--settings mlp,cnn] [--repeats 3] [--train-subset 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    # Hinton's MLP teacher (784-1200-1200-10) and a small MLP student
    "mlp": {"teacher": {"name": "mlp", "width": 1200, "depth": 2},
            "student": {"name": "mlp", "width": 128, "depth": 1}},
    # kdlab's small CNN family: teacher width 1, student width 0.5 (the bench_loop student)
    "cnn": {"teacher": {"name": "cnn", "width": 1.0, "depth": 2}, "student": {"name": "cnn", "width": 0.5, "depth": 2}},
}
VARIANTS = ("kdlab-live", "torchdistill", "kdlab-cached")
BATCH, LR, MOMENTUM, TEMPERATURE, SOFT_WEIGHT, VAL_SIZE, EVAL_BATCH = 128, 0.05, 0.9, 4.0, 0.9, 5000, 1024


# ----------------------------------------------------------------------------------------- memory (Linux only)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Reset the resident high-water mark (VmHWM) to the current resident size (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


# ----------------------------------------------------------------------------------------- one variant (child)


def child(variant: str, setting: str, train_subset: int, threads: int) -> dict[str, Any]:
    import torch

    from kdlab.data import load_dataset
    from kdlab.models import create_model
    from kdlab.models import save_model_weights

    try:  # both frameworks are imported in every child, so their resident baselines match
        import torchdistill  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which explains it
        return {"error": f"import torchdistill failed: {type(exc).__name__}: {exc}"}
    torch.set_num_threads(threads)
    spec = SETTINGS[setting]
    data = load_dataset("fashion_mnist", val_size=VAL_SIZE, seed=0, train_subset=train_subset)
    models = {}
    for role in ("teacher", "student"):
        opts = {k: v for k, v in spec[role].items() if k != "name"}
        torch.manual_seed(0)
        models[role] = create_model(spec[role]["name"], data.num_classes, data.in_shape, **opts)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "teacher.safetensors"
        save_model_weights(weights, models["teacher"], {})
        os.environ["KDLAB_CACHE"] = str(Path(tmp) / "cache")
        cache_seconds = None
        if variant == "kdlab-cached":  # the one-off cost of the teacher's logits, outside the measured run
            from kdlab.distill import cached_teacher_logits

            started = time.perf_counter()
            cached_teacher_logits(models["teacher"].eval(), data.train.x, data.train.fingerprint(),
                                  batch_size=EVAL_BATCH)
            cache_seconds = time.perf_counter() - started
        reset_peak_rss()
        rss_before = _status_kib("VmRSS")
        if variant.startswith("kdlab"):
            result = run_kdlab(spec, weights, Path(tmp) / "run", train_subset, cached=variant == "kdlab-cached")
        else:
            result = run_torchdistill(models["teacher"], models["student"], data)
        peak = _status_kib("VmHWM")
    samples = len(data.train)  # every training sample once: both loaders keep the last, short batch
    return {**result, "variant": variant, "setting": setting, "samples": samples,
            "samples_per_s": samples / result["train_seconds"], "peak_extra_mib": (peak - rss_before) / 1024,
            "rss_before_mib": rss_before / 1024, "cache_seconds": cache_seconds, "torch": torch.__version__}


def run_kdlab(spec: dict[str, Any], weights: Path, out: Path, train_subset: int, cached: bool) -> dict[str, Any]:
    from kdlab.config import parse_config
    from kdlab.recipe import run

    cfg = parse_config({
        "data": {"name": "fashion_mnist", "val_size": VAL_SIZE, "seed": 0, "train_subset": train_subset},
        "model": spec["student"],
        "teacher": {"model": spec["teacher"], "weights": str(weights), "cache": cached},
        "loss": {"name": "kd", "temperature": TEMPERATURE, "alpha": SOFT_WEIGHT},
        "optim": {"name": "sgd", "lr": LR, "momentum": MOMENTUM, "nesterov": True, "weight_decay": 0.0},
        "schedule": {"name": "constant"},
        # NCHW, the layout torchdistill trains in (kdlab's default would switch conv nets to channels_last, which
        # bench_loop.py --switches measures on its own)
        "train": {"epochs": 1, "batch_size": BATCH, "eval_batch_size": EVAL_BATCH, "seed": 0, "progress": False,
                  "channels_last": False},
    })
    summary = run(cfg, out)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"train_seconds": history[0]["epoch_seconds"], "val_accuracy": history[0]["val_accuracy"],
            "test_accuracy": summary["test_accuracy"], "train_loss": history[0]["train_loss"]}


def run_torchdistill(teacher, student, data) -> dict[str, Any]:
    import torch
    from torch.utils.data import RandomSampler, TensorDataset
    from torchdistill.core.distillation import get_distillation_box

    from kdlab.data import TensorLoader
    from kdlab.train import evaluate

    train_config = {
        "num_epochs": 1,
        "train_data_loader": {"dataset_id": "train", "sampler": {"class_or_func": RandomSampler, "kwargs": {}},
                              "kwargs": {"batch_size": BATCH, "num_workers": 0, "drop_last": False}},
        "teacher": {"forward_proc": "forward_batch_only", "sequential": [], "requires_grad": False},
        "student": {"forward_proc": "forward_batch_only", "sequential": [], "requires_grad": True},
        "optimizer": {"key": "SGD", "kwargs": {"lr": LR, "momentum": MOMENTUM, "nesterov": True,
                                               "weight_decay": 0.0}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {
            "criterion": {"key": "KDLoss", "kwargs": {
                "student_module_path": ".", "student_module_io": "output", "teacher_module_path": ".",
                "teacher_module_io": "output", "temperature": TEMPERATURE, "alpha": 1 - SOFT_WEIGHT,
                "reduction": "batchmean"}},
            "weight": 1.0}}}},
    }
    dataset = {"train": TensorDataset(data.train.x, data.train.y)}
    # torchdistill leaves the teacher's mode as it was given (pre_epoch_process sets only the student to train());
    # a frozen teacher belongs in eval mode (batch-norm running statistics), as kdlab's load_teacher puts it
    teacher.eval()
    torch.manual_seed(0)
    box = get_distillation_box(teacher, student, dataset, train_config, torch.device("cpu"), None, False, 1.0)
    box.pre_epoch_process(epoch=0)
    loss_sum, seen = 0.0, 0
    started = time.perf_counter()
    for sample_batch, targets, supp_dict in box.train_data_loader:
        loss = box.forward_process(sample_batch, targets, supp_dict)
        box.post_forward_process(loss=loss)
        loss_sum += loss.item() * len(targets)
        seen += len(targets)
    train_seconds = time.perf_counter() - started
    box.post_epoch_process()
    val = evaluate(student, TensorLoader(data.val, EVAL_BATCH))
    test = evaluate(student, TensorLoader(data.test, EVAL_BATCH))
    return {"train_seconds": train_seconds, "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
            "train_loss": loss_sum / seen}


# ----------------------------------------------------------------------------------------- driver (parent)


def spawn(variant: str, setting: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--settings", setting, "--train-subset",
           str(args.train_subset), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{variant} on {setting} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="mlp,cnn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; allowed: {', '.join(SETTINGS)}")
    if args.child:
        print(json.dumps(child(args.child, settings[0], args.train_subset, args.threads)))
        return
    if not Path("/proc/self/clear_refs").exists():
        raise SystemExit("peak memory is read from Linux's /proc/self/status after resetting it through "
                         "/proc/self/clear_refs; this system has no such file, so the memory ratio cannot be measured")
    try:
        import torchdistill
    except Exception as exc:  # noqa: BLE001
        print(f"torchdistill cannot run here: import torchdistill failed with {type(exc).__name__}: {exc}\n"
              "It is deliberately not a dependency of kdlab (it needs torchvision, which does not import beside the "
              "CPU torch kdlab pins). Run `make bench-torchdistill`: it builds .venv-torchdistill with "
              "torch==2.14.1 torchvision==0.29.1 torchdistill==1.1.5 (about 5.7 GB) plus kdlab, and runs this "
              "script there.", file=sys.stderr)
        raise SystemExit(2) from None
    import torch

    print(f"kdlab vs torchdistill {torchdistill.__version__} on torch {torch.__version__}, Fashion-MNIST "
          f"({args.train_subset} training images), batch {BATCH}, 1 epoch, {args.threads} threads, "
          f"{args.repeats} interleaved repeats, medians")
    for setting in settings:
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for repeat in range(args.repeats):
            order = VARIANTS if repeat % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                results[variant].append(spawn(variant, setting, args))
        med = {v: {k: statistics.median(r[k] for r in rs) for k in ("samples_per_s", "peak_extra_mib",
                                                                     "test_accuracy", "train_loss")}
               for v, rs in results.items()}
        spec = SETTINGS[setting]
        print(f"\n{setting}: teacher {spec['teacher']}, student {spec['student']}")
        print(f"  {'variant':<13} {'samples/s':>10} {'peak MiB':>9} {'train loss':>11} {'test acc':>9}")
        for v in VARIANTS:
            m = med[v]
            print(f"  {v:<13} {m['samples_per_s']:>10.0f} {m['peak_extra_mib']:>9.1f} {m['train_loss']:>11.4f} "
                  f"{m['test_accuracy']:>9.4f}")
        cache = statistics.median(r["cache_seconds"] for r in results["kdlab-cached"])
        td = med["torchdistill"]
        for v in ("kdlab-live", "kdlab-cached"):
            print(f"  {v} / torchdistill: samples/s ratio {med[v]['samples_per_s'] / td['samples_per_s']:.2f}  "
                  f"peak-memory ratio {med[v]['peak_extra_mib'] / td['peak_extra_mib']:.2f}")
        print(f"  (kdlab-cached: building the teacher-logit cache once took {cache:.1f} s, outside the epoch)")


if __name__ == "__main__":
    main()
