"""`kdlab` command line: parse, validate, call a recipe or a study. Nothing else lives here.

Exit codes: 0 success; 2 bad configuration or arguments (nothing ran); 3 data unavailable; 4 training diverged;
1 any other kdlab error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from .errors import ConfigError, DataError, KdlabError, TrainingDiverged

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdlab", description=__doc__.splitlines()[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model with its own labels (loss defaults to ce)")
    _add_run_args(p)
    p = sub.add_parser("distill", help="distil a student from a teacher (config needs a teacher section)")
    _add_run_args(p)

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

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("what", choices=("models", "losses", "datasets", "studies"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except KdlabError as exc:
        code = next(c for cls, c in EXIT_CODES if isinstance(exc, cls))
        label = {2: "config error", 3: "data error", 4: "training diverged"}.get(code, "error")
        print(f"kdlab: {label}: {exc}", file=sys.stderr)
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
    summary = run(cfg, out, progress=args.progress)
    print(f"test accuracy {summary['test_accuracy']:.4f}  (best epoch {summary['best_epoch']}, "
          f"{summary['params']:,} params)  run: {out}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    return cmd_train(args, require_teacher=True)


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import TensorLoader, load_dataset
    from .io import read_safetensors_metadata
    from .train import evaluate, load_model_weights

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
    from .studies import STUDIES

    study = STUDIES.get(args.name)
    out = Path(args.out) if args.out else Path("runs") / args.name
    study(config=args.config, out=out, preset=args.preset, overrides=args.overrides, progress=args.progress)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
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


COMMANDS = {"train": cmd_train, "distill": cmd_distill, "eval": cmd_eval, "data": cmd_data,
            "study": cmd_study, "list": cmd_list}


if __name__ == "__main__":
    sys.exit(main())
