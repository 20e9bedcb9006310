"""`kdlab` command line: parse, validate, call a recipe or a study. Nothing else lives here.

Exit codes: 0 success; 2 bad configuration, arguments or input/output files (a config or weights file that cannot be
read, an --out that cannot be written or is in use by another run, a full disk); 3 data unavailable or corrupt;
4 training diverged; 1 any other kdlab error. Every one of them is a one-line message naming the key or file and the
fix, never a traceback. A run stopped by a full disk keeps its last complete checkpoint and resumes when rerun.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from pydantic import ValidationError

from . import __version__
from .config import format_validation_error
from .errors import ConfigError, DataError, KdlabError, TrainingDiverged, describe_os_error

EXIT_CODES = ((ConfigError, 2), (DataError, 3), (TrainingDiverged, 4), (KdlabError, 1))


def _add_run_args(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    if config_required:
        p.add_argument("config", help="YAML config file (one file = one experiment)")
    else:
        p.add_argument("config", nargs="?", default=None, help="optional YAML config file")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: only on a terminal)")


def _add_wait_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true",
                   help="if another process is training in --out, wait for it to finish (then reuse its run) "
                        "instead of exiting with status 2")


DESCRIPTION = """\
Knowledge distillation that explains and fixes why distillation fails: train teachers and students, distil with
response, feature and relation losses, and run studies that test the literature's claims on your models and data.
One YAML file is one experiment; every key is checked before anything runs."""

EPILOG = """\
examples:
  kdlab train configs/teacher_cnn.yaml --out runs/teacher
  kdlab distill configs/student_kd.yaml --out runs/student --set loss.temperature=2
  kdlab eval runs/student
  kdlab study capacity --preset quick --out runs/capacity
  kdlab advise configs/advise/fashion_mnist.yaml --budget 5 --out runs/advise
  kdlab list models|losses|datasets|studies|spaces

exit codes: 0 done; 2 bad config, arguments or files; 3 data unavailable or corrupt; 4 training diverged; 1 other.
Rerunning a command with the same --out resumes it. `kdlab COMMAND --help` for each command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdlab", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kdlab {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model with its own labels (loss defaults to ce)")
    _add_run_args(p)
    _add_wait_arg(p)
    p = sub.add_parser("distill", help="distil a student from a teacher (config needs a teacher section)")
    _add_run_args(p)
    _add_wait_arg(p)

    p = sub.add_parser("eval", help="evaluate a weights file (.safetensors) or a run directory")
    p.add_argument("checkpoint")
    p.add_argument("--data", default=None, help="dataset name (default: the one the model was trained on)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--batch-size", type=int, default=1024)

    p = sub.add_parser("data", help="datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="make a dataset available offline (verifies checksums)")
    f.add_argument("name", help="dataset name, e.g. fashion-mnist")
    f.add_argument("--data-dir", default=None)

    p = sub.add_parser("study", help="run a study (a grid of runs with a report)")
    p.add_argument("name", help="study name (see `kdlab list studies`)")
    _add_run_args(p, config_required=False)
    p.add_argument("--preset", default=None, help="named preset, e.g. quick")
    # shorthands for --set executor.*=... (studies whose config has an 'executor' section, e.g. capacity)
    p.add_argument("--executor", choices=("local", "pool", "ray"), default=None,
                   help="where the study's runs train: this process, local worker processes, or a Ray cluster")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="parallel runs (pool; local Ray cluster)")
    p.add_argument("--address", default=None, metavar="ADDR", help="address of a running Ray cluster (ray only)")

    p = sub.add_parser("tune", help="tune a distill config's hyperparameters on validation; write best.yaml")
    p.add_argument("config", help="a distill (or train) config: the teacher/student pair to tune")
    p.add_argument("--space", default=None, metavar="SPACE.yaml",
                   help="values to try per config key (default: the search space of the config's loss)")
    p.add_argument("--trials", type=int, required=True, metavar="N",
                   help="trial budget: the whole grid when it has <= N points, else N seeded random points")
    p.add_argument("--out", required=True, help="output directory (trials.csv, tuning.json, report.md, best.yaml)")
    p.add_argument("--seeds", type=_seed_list, default=[0], metavar="S,S", help="tuning seeds (default: 0)")
    p.add_argument("--final-seeds", type=_seed_list, default=[1, 2, 3], metavar="S,S",
                   help="fresh seeds the chosen config is trained and tested on (default: 1,2,3)")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the random search (default: 0)")
    p.add_argument("--store", default=None, help="run store for trials and final runs (default: OUT/runs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of CONFIG (repeatable)")
    p.add_argument("--executor", choices=("local", "pool", "ray"), default="local",
                   help="where the runs train: this process, local worker processes, or a Ray cluster")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="parallel runs (pool; local Ray cluster)")
    p.add_argument("--address", default=None, metavar="ADDR", help="address of a running Ray cluster (ray only)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: only on a terminal)")

    p = sub.add_parser("advise", help="which teacher, method and hyperparameters to distil with: a budgeted pilot "
                       "that recommends them (report.md, results.json, recommended.yaml)")
    p.add_argument("config", help="advise config: teachers, student, data, optional assistants and pilot")
    p.add_argument("--budget", type=float, required=True, metavar="MINUTES",
                   help="wall-clock minutes the command may take; the pilot stops within them")
    p.add_argument("--out", required=True, help="output directory (report.md, results.json, recommended.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set pilot.points=2 (repeatable)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: only on a terminal)")

    p = sub.add_parser("report", help="rebuild a study's report (report.md, report.html, figures) from results.json")
    p.add_argument("dir", help="the output directory of a study (holds results.json)")

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("what", choices=("models", "losses", "datasets", "studies", "spaces"),
                   help="spaces: each loss's search space (what `kdlab tune` tries by default)")

    p = sub.add_parser("models", help="inspect models")
    msub = p.add_subparsers(dest="models_command", required=True)
    t = msub.add_parser("taps", help="list a model's feature taps (kdlab taps, then module paths) with output shapes")
    t.add_argument("model", help="a registered model name (default capacity), a run directory or a .safetensors file")
    t.add_argument("--in-shape", default=None, metavar="C,H,W",
                   help="input shape for a model name (default: 1,28,28, Fashion-MNIST)")
    t.add_argument("--num-classes", type=int, default=10, help="classes for a model name (default: 10)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a model option for a model name, e.g. --set width=0.5 (repeatable)")
    t.add_argument("--all", action="store_true", help="also list module paths the forward pass never calls")

    p = sub.add_parser("protect", help="protect a model against distillation")
    psub = p.add_subparsers(dest="protect_command", required=True)
    n = psub.add_parser("nasty", help="train a nasty teacher: accurate itself, poor to distil from")
    _add_run_args(n)

    p = sub.add_parser("audit", help="audit a model")
    asub = p.add_subparsers(dest="audit_command", required=True)
    a = asub.add_parser("distillability", help="how well students distil from MODEL (a run directory or weights)")
    a.add_argument("model", help="a kdlab run directory or a .safetensors file")
    a.add_argument("--out", required=True, help="output directory (report, results.json)")
    a.add_argument("--preset", default=None, help="named preset, e.g. quick")
    a.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: only on a terminal)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()  # a command with a time budget (advise) counts from here, torch's import included
    args = build_parser().parse_args(argv)
    args.started = started
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    from .train import distributed

    ranks = distributed.init_from_env() if args.command in ("train", "distill") else distributed.SINGLE
    try:
        code = COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        code = 130
    except KdlabError as exc:
        code = next(c for cls, c in EXIT_CODES if isinstance(exc, cls))
        label = {2: "config error", 3: "data error", 4: "training diverged"}.get(code, "error")
        if ranks.is_main:
            print(f"kdlab: {label}: {exc}", file=sys.stderr)
    except OSError as exc:  # a file the command reads or writes: missing, unreadable, read-only, disk full
        code = 2
        if ranks.is_main:
            print(f"kdlab: file error: {describe_os_error(exc)}", file=sys.stderr)
    except ValidationError as exc:  # a config a study builds from values its own schema let through (e.g. a seed)
        code = 2
        if ranks.is_main:
            print(f"kdlab: config error: {exc.title}: {format_validation_error(exc, None)}", file=sys.stderr)
    if ranks.enabled:
        distributed.shutdown_and_exit(code)  # never returns: avoids gloo's abort at interpreter teardown
    return code


def _default_out(args: argparse.Namespace, fallback: str) -> Path:
    if args.out:
        return Path(args.out)
    return Path("runs") / (Path(args.config).stem if args.config else fallback)


def cmd_train(args: argparse.Namespace, require_teacher: bool = False) -> int:
    from .config import load_config
    from .recipe import run

    cfg = load_config(args.config, args.overrides)
    if require_teacher and cfg.teacher is None:
        raise ConfigError("`kdlab distill` needs a 'teacher' section (teacher.run: <run dir>, "
                          "or teacher.model + teacher.weights)")
    out = _default_out(args, "train")
    summary = run(cfg, out, progress=args.progress, wait=args.wait)
    from .train.distributed import current

    if current().is_main:
        print(f"test accuracy {summary['test_accuracy']:.4f}  (best epoch {summary['best_epoch']}, "
              f"{summary['params']:,} params)  run: {out}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    return cmd_train(args, require_teacher=True)


def cmd_eval(args: argparse.Namespace) -> int:
    from . import compress  # noqa: F401  (registers the pruned and low-rank architectures load_model_weights rebuilds)
    from .data import TensorLoader, load_dataset
    from .io import read_safetensors_metadata
    from .models import load_model_weights
    from .train import evaluate

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "best.safetensors"
    if not path.is_file():
        raise ConfigError(f"checkpoint '{args.checkpoint}' is neither a .safetensors file nor a run directory "
                          "with checkpoints/best.safetensors")
    meta = read_safetensors_metadata(path)
    dataset = args.data or meta.get("dataset")
    if not dataset:
        raise ConfigError(f"'{path}' does not record its dataset; pass --data NAME")
    model = load_model_weights(path)
    data = load_dataset(dataset, data_dir=args.data_dir)
    split = getattr(data, args.split)
    result = evaluate(model, TensorLoader(split, args.batch_size))
    print(json.dumps({"checkpoint": str(path), "dataset": dataset, "split": args.split, **result}, indent=2))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data import fetch_fashion_mnist

    name = args.name.replace("-", "_").lower()
    if name != "fashion_mnist":
        raise ConfigError(f"`kdlab data fetch {args.name}`: only fashion-mnist can be fetched; digits ships with "
                          "scikit-learn, and CIFAR binary files are read from a local --data-dir")
    where = fetch_fashion_mnist(args.data_dir)
    print(f"fashion-mnist ready in {where}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from .studies import STUDIES, run_study

    study = STUDIES.get(args.name)
    out = Path(args.out) if args.out else Path("runs") / args.name
    # appended after the user's --set so the explicit flags win
    # (the address is quoted: YAML would read some host:port forms as numbers)
    executor = [f"executor.{key}={value}" for key, value in
                (("name", args.executor), ("workers", args.workers),
                 ("address", json.dumps(args.address) if args.address is not None else None)) if value is not None]
    run_study(study, config=args.config, out=out, preset=args.preset, overrides=[*args.overrides, *executor],
              progress=args.progress)
    return 0


def cmd_advise(args: argparse.Namespace) -> int:
    from .advise import advise

    results = advise(args.config, args.budget, Path(args.out), overrides=tuple(args.overrides),
                     progress=args.progress, started=args.started)
    rec = results["recommendation"]
    if rec["pick"] is None:
        print(f"no candidate trained ({rec['reason']}); CE alone")
    else:
        what = (f"distil from {rec['pick']['teacher']} with {rec['pick']['key'].split('/', 1)[1]}"
                if rec["recommended"] != "ce" else f"CE alone (best candidate {rec['pick']['key']})")
        gain = rec["test_gain"]
        print(f"{what}; expected gain {100 * gain['mean']:+.2f} points [{100 * gain['low']:+.2f}, "
              f"{100 * gain['high']:+.2f}] over CE ({rec['verdict']})")
    print(f"{results['elapsed_seconds']:.0f} s of a {results['budget_seconds']:.0f} s budget; report: "
          f"{Path(args.out) / 'report.md'}  config: {Path(args.out) / results['recommended_yaml']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .studies import rerender

    files = rerender(args.dir)
    print(f"rebuilt {', '.join(files)} in {args.dir}")
    return 0


def _seed_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integer seeds") from None


def cmd_tune(args: argparse.Namespace) -> int:
    from .tuning import tune_pair

    result = tune_pair(args.config, args.out, args.trials, space=args.space, seeds=args.seeds,
                       final_seeds=args.final_seeds, search_seed=args.search_seed, overrides=args.overrides,
                       store=args.store, executor=args.executor, workers=args.workers, address=args.address,
                       progress=args.progress)
    test = result.final_test
    print(f"chosen {result.chosen_values} of {len(result.trials)} trials: validation {result.selected_val:.4f}, "
          f"test {test['mean']:.4f} ± {test['std']:.4f} on fresh seeds {list(result.final_seeds)}  "
          f"best config: {Path(args.out) / 'best.yaml'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "spaces":
        from .losses import LOSSES, search_space

        for name in LOSSES.names():
            for control in (None, *LOSSES.get(name).control_spaces):
                space = search_space(name, control)
                size = space.size()
                print(f"{name}{'/' + control if control else ''}: {space.describe()} ({size} point{'s' * (size != 1)})")
        return 0
    if args.what == "models":
        from .models import MODELS as reg
    elif args.what == "losses":
        from .losses import LOSSES as reg
    elif args.what == "datasets":
        from .data import DATASETS as reg
    else:
        from .studies import STUDIES as reg
    print("\n".join(reg.names()))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .config import apply_overrides
    from .distill.tap_table import tap_table

    model, in_shape = _model_for_taps(args.model, args.in_shape, args.num_classes,
                                      apply_overrides({}, args.overrides))
    rows = tap_table(model, in_shape)
    shown = [r for r in rows if args.all or r["shape"] is not None]
    print(f"{type(model).__name__} on inputs {list(in_shape)}; shapes are per sample (no batch dim)")
    named = [r for r in shown if r["named"]]
    if named:
        width = max(len(r["tap"]) for r in named)
        print("kdlab taps:")
        for r in named:
            print(f"  {r['tap']:<{width}}  {_shape(r['shape']):<16} {r['path']}")
    paths = [r for r in shown if not r["named"]]
    width = max((len(r["tap"]) for r in paths), default=0)
    print("module paths:")
    for r in paths:
        print(f"  {r['tap']:<{width}}  {_shape(r['shape']):<16} {r['module']}")
    return 0


def _model_for_taps(source: str, in_shape_text: str | None, num_classes: int, options: dict):  # noqa: ANN202
    """A model from a registered name (with options) or from saved weights, and its input shape."""
    from . import compress  # noqa: F401  (registers the pruned and low-rank architectures load_model_weights rebuilds)
    from .models import MODELS, create_model, load_model_weights

    path = Path(source)
    if source in MODELS:
        in_shape = _parse_shape(in_shape_text) if in_shape_text else (1, 28, 28)
        return create_model(source, num_classes, in_shape, **options), in_shape
    if path.is_dir() or path.suffix == ".safetensors":
        from .distill.teacher import teacher_weights_path

        weights = teacher_weights_path(path) if path.is_dir() else path
        if not weights.is_file():
            raise ConfigError(f"MODEL '{source}' is neither a finished run directory nor a .safetensors file")
        model = load_model_weights(weights)
        return model, _parse_shape(in_shape_text) if in_shape_text else tuple(model.spec["in_shape"])
    from .registry import did_you_mean

    raise ConfigError(f"MODEL '{source}' is not a registered model, a run directory or a .safetensors file."
                      f"{did_you_mean(source, MODELS.names())} Models: {', '.join(MODELS.names())}")


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if not shape or any(v < 1 for v in shape):
        raise ConfigError(f"--in-shape '{text}' is not allowed; give positive integers such as 1,28,28 or 64")
    return shape


def _shape(shape: list[int] | None) -> str:
    return "(not called)" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def cmd_protect(args: argparse.Namespace) -> int:
    nasty = _optional("kdlab.protect.nasty", "protect_nasty")
    nasty(args.config, args.out or _default_out(args, "nasty"), overrides=tuple(args.overrides),
          progress=args.progress)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .studies.audit import audit_distillability

    audit_distillability(args.model, Path(args.out), preset=args.preset, overrides=tuple(args.overrides),
                         progress=args.progress)
    return 0


def _optional(module: str, name: str):  # noqa: ANN202  (a function of a package that may not be installed)
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise KdlabError(f"{module}.{name} is not available in this kdlab installation") from None


COMMANDS = {"train": cmd_train, "distill": cmd_distill, "eval": cmd_eval, "data": cmd_data,
            "study": cmd_study, "advise": cmd_advise, "report": cmd_report, "tune": cmd_tune, "list": cmd_list,
            "models": cmd_models, "protect": cmd_protect, "audit": cmd_audit}


if __name__ == "__main__":
    sys.exit(main())
