"""A tuning result on disk: trials.csv, tuning.json, report.md and best.yaml (the chosen config, ready to run)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from ..io import atomic_write_text
from ..report.format import format_values
from .engine import TuningResult

TRIALS_CSV = "trials.csv"
RESULT_JSON = "tuning.json"
REPORT_MD = "report.md"
BEST_YAML = "best.yaml"


def trials_table(result: TuningResult) -> list[dict[str, Any]]:
    """One row per trial: its index, each space key's value, the validation accuracy per tuning seed, the mean,
    and whether it was chosen."""
    rows = []
    for position, trial in enumerate(result.trials):
        row: dict[str, Any] = {"trial": trial.index, **trial.values}
        row.update({f"val_seed{seed}": acc for seed, acc in trial.val_accuracy.items()})
        row["mean_val"] = trial.mean_val
        row["chosen"] = position == result.chosen
        rows.append(row)
    return rows


def write_tuning(result: TuningResult, out: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write the four files into ``out`` (atomically); return their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in (TRIALS_CSV, RESULT_JSON, REPORT_MD, BEST_YAML)}
    rows = trials_table(result)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(paths[TRIALS_CSV], buffer.getvalue())
    atomic_write_text(paths[RESULT_JSON], json.dumps({**result.to_dict(), "command": command}, indent=2) + "\n")
    atomic_write_text(paths[REPORT_MD], report_markdown(result, command))
    header = (f"# kdlab tune: the best of {len(result.trials)} trials of '{result.label}' by mean validation "
              f"accuracy over seeds {list(result.tuning_seeds)}\n# chosen: {_values(result.chosen_values)}\n"
              f"# run it with: kdlab distill {paths[BEST_YAML]}\n")
    atomic_write_text(paths[BEST_YAML], header + yaml.safe_dump(result.chosen_config.to_dict(), sort_keys=False))
    return paths


def report_markdown(result: TuningResult, command: str | None = None) -> str:
    """A short report: the space and budget, the trials table, the chosen values, the fresh-seed result."""
    space_size = result.space.size()
    how = (f"the whole grid of {space_size} points" if result.sampler == "grid" else
           f"a random sample of {len(result.trials)} of its {space_size} points (search seed {result.search_seed})")
    keys = result.space.keys
    seeds = list(result.tuning_seeds)
    lines = [
        f"# Tuning: {result.label}",
        "",
        f"Space: {result.space.describe()}.",
        f"Budget: {result.budget} trials; ran {how}, each trial on tuning seeds {seeds}.",
        "Selection: the highest mean best-epoch validation accuracy over the tuning seeds (the earlier trial on a "
        "tie); the trials' test accuracy is never read.",
        "",
        "| trial | " + " | ".join(keys) + " | " + " | ".join(f"val seed {s}" for s in seeds) + " | mean val |",
        "|" + "---|" * (len(keys) + len(seeds) + 2),
    ]
    for position, trial in enumerate(result.trials):
        mark = " **chosen**" if position == result.chosen else ""
        cells = [str(trial.index) + mark, *(_short(trial.values[k]) for k in keys),
                 *(f"{100 * trial.val_accuracy[s]:.2f}" for s in seeds), f"{100 * trial.mean_val:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    val, test = result.final_val, result.final_test
    lines += [
        "",
        f"Chosen: {_values(result.chosen_values)} (mean validation accuracy {100 * result.selected_val:.2f}%).",
        f"Retrained on fresh seeds {list(result.final_seeds)}: validation {100 * val['mean']:.2f} ± "
        f"{100 * val['std']:.2f}%, test {100 * test['mean']:.2f} ± {100 * test['std']:.2f}% (mean ± std over "
        f"{test['n']} seeds).",
        f"Validation-to-test gap (selected validation minus fresh-seed test): {100 * result.val_to_test_gap:+.2f} "
        "points.",
    ]
    if command:
        lines += ["", f"Reproduce: `{command}`"]
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


def _values(values: dict[str, Any]) -> str:
    return format_values(values, empty="the base config (nothing to tune)")
