"""The kinds study's plots and report (reads results and the runs' metrics; never trains)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .document import Report
from .plots import save_figure

KIND_COLOURS = {"response": "#4c78a8", "feature": "#f58518", "relation": "#54a24b", "online": "#b279a2",
                "self": "#e45756"}


def plot_accuracy_by_method(results: dict[str, Any], path: Path) -> Path:
    """Student test accuracy per method (mean ± std over seeds), coloured by kind; CE as a dashed line and band."""
    table = results["table"]
    labels = list(table)
    means = [table[m]["test_accuracy"]["mean"] * 100 for m in labels]
    stds = [table[m]["test_accuracy"]["std"] * 100 for m in labels]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(labels) + 2), 4))
    ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color=[KIND_COLOURS[table[m]["kind"]] for m in labels])
    ce = results["ce_student"]
    ax.axhline(ce["mean"] * 100, color="k", linestyle="--", label="CE only")
    ax.axhspan((ce["mean"] - ce["std"]) * 100, (ce["mean"] + ce["std"]) * 100, color="k", alpha=0.08)
    ax.axhline(results["teacher"]["test_accuracy"] * 100, color="#888", linestyle=":", label="offline teacher")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    low = min([m - s for m, s in zip(means, stds)] + [ce["mean"] * 100])
    high = max([m + s for m, s in zip(means, stds)] + [results["teacher"]["test_accuracy"] * 100])
    pad = max(0.5, (high - low) * 0.3)
    ax.set_ylim(low - pad, high + pad)
    for kind, colour in KIND_COLOURS.items():
        if any(row["kind"] == kind for row in table.values()):
            ax.bar([0], [0], color=colour, label=kind)  # legend entry only
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title("Kinds of knowledge and schemes (mean ± std over seeds)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_paired_differences(results: dict[str, Any], path: Path) -> Path:
    """Paired difference against CE and against offline response KD per method, with 95% t intervals."""
    table = results["table"]
    labels = list(table)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(labels) + 1.8), sharey=True)
    reference = results["config"]["reference"]
    for ax, key, title in ((axes[0], "minus_ce", "method - CE"), (axes[1], "minus_reference", f"method - {reference}")):
        for i, label in enumerate(labels):
            diff = table[label][key]
            mean = diff["mean"] * 100
            colour = KIND_COLOURS[table[label]["kind"]]
            if math.isnan(diff["low"]):
                ax.plot(mean, i, "o", color=colour)
            else:
                ax.errorbar(mean, i, xerr=[[mean - diff["low"] * 100], [diff["high"] * 100 - mean]], fmt="o",
                            color=colour, capsize=3)
        ax.axvline(0, color="k", linewidth=0.8)
        ax.set_title(f"{title} (points)")
        ax.grid(axis="x", alpha=0.3)
    margin = results["config"]["match_margin"] * 100
    axes[1].axvspan(-margin, margin, color="#b279a2", alpha=0.1, label=f"±{margin:g} (online matches offline)")
    axes[1].legend(fontsize=8)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    return save_figure(fig, path)


def plot_loss_terms(results: dict[str, Any], path: Path) -> Path | None:
    """Each feature/relation method's logged terms per epoch (first seed): the separately logged parts of the
    objective. None when no method has feature terms."""
    seed = results["config"]["seeds"][0]
    runs = [(s["method"], Path(s["run_dir"])) for s in results["students"]
            if s["seed"] == seed and s.get("features")]
    if not runs:
        return None
    cols = min(3, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, constrained_layout=True)
    for ax, (method, run_dir) in zip(axes.flat, runs):
        history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        keys = sorted({k for h in history for k in h if k.startswith("train_") and k not in
                       ("train_loss", "train_accuracy")})
        for key in keys:
            points = [(h["epoch"], h[key]) for h in history if key in h and h[key] > 0]
            if points:
                ax.plot(*zip(*points), marker=".", label=key.removeprefix("train_"))
        ax.set_yscale("log")
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.suptitle(f"Logged parts of the objective per epoch (seed {seed}; unweighted term values)")
    return save_figure(fig, path)


def plot_generations(results: dict[str, Any], path: Path) -> Path | None:
    """Born-again networks: test accuracy per generation (generation 0 = the CE student)."""
    if not results["ban_generations"]:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, gens in results["ban_generations"].items():
        ax.errorbar(range(len(gens)), [g["mean"] * 100 for g in gens], yerr=[g["std"] * 100 for g in gens],
                    marker="o", capsize=3, label=label)
    ax.set_xlabel("generation (0 = CE)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(range(max(len(g) for g in results["ban_generations"].values())))
    ax.set_title("Born-again generations (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_kinds_report(results: dict[str, Any], out: Path) -> list[str]:
    """Plots, report.md and report.html into ``out``; returns the file names."""
    from ..report.format import format_interval, format_pm

    files = ["accuracy_by_method.png", "paired_differences.png"]
    plot_accuracy_by_method(results, out / files[0])
    plot_paired_differences(results, out / files[1])
    optional = [("loss_terms.png", plot_loss_terms, "logged feature/relation terms per epoch"),
                ("ban_generations.png", plot_generations, "born-again generations")]
    captions = {files[0]: "student test accuracy by method", files[1]: "paired differences"}
    for name, plot, caption in optional:
        if plot(results, out / name) is not None:
            files.append(name)
            captions[name] = caption

    cfg = results["config"]
    t, st = results["teacher"], cfg["student"]
    rep = Report(f"kdlab kinds study — {results['dataset']}")
    rep.paragraph(
        f"Teacher: {t['name']} ({t['params']:,} params, test accuracy {t['test_accuracy'] * 100:.2f}%), trained "
        f"{cfg['teacher']['epochs']} epochs on {cfg['teacher']['train_subset'] or 'all'} labelled images. Student: "
        f"{_model_text(st['model'])} trained {st['epochs']} epochs on {st['train_subset'] or 'all'} labelled images, "
        f"seeds {cfg['seeds']}; for a given seed every method's student starts from the same initial weights and sees "
        f"the same batches, so differences are paired. Offline methods distil from the trained teacher; online methods "
        f"train a network of the teacher's architecture alongside the student from scratch; self-distillation uses "
        f"no other architecture.")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Student test accuracy (%), mean ± std over seeds")
    rep.paragraph(f"CE only (no teacher): {format_pm(results['ce_student'])}.")
    reference = cfg["reference"]
    rep.table(["method", "kind", "scheme", "test acc (%)", "- CE (points)", f"- {reference} (points)",
               "seconds per run"],
              [[label, row["kind"], row["scheme"], format_pm(row["test_accuracy"]), format_interval(row["minus_ce"]),
                format_interval(row["minus_reference"]), f"{row['seconds']['mean']:.0f}"]
               for label, row in results["table"].items()])
    rep.heading("Methods")
    rep.bullets([_describe(m) for m in cfg["methods"]])
    for name in files:
        rep.image(name, captions[name])
    rep.reproduce(results)
    rep.write(out)
    return files + ["report.md", "report.html"]


def _describe(method: dict[str, Any]) -> str:
    parts = [f"{method['label']} ({method['kind']}):"]
    if method.get("scheme"):
        scheme = method["scheme"]
        options = ", ".join(f"{k}={v}" for k, v in scheme.items() if k != "name")
        parts.append(f"scheme {scheme['name']}" + (f" ({options})" if options else ""))
    loss = method["loss"]
    parts.append("loss " + loss["name"] + "".join(f" {k}={v}" for k, v in loss.items() if k != "name"))
    for term in method.get("features", []):
        parts.append(f"+ {term['weight']:g} x {term['loss']['name']}({term['student_tap']} -> {term['teacher_tap']})")
    if method.get("hint_epochs"):
        parts.append(f"after {method['hint_epochs']} hint epoch(s)")
    return " ".join(parts)


def _model_text(model: dict[str, Any]) -> str:
    return f"{model['name']}(" + ", ".join(f"{k}={v}" for k, v in model.items() if k != "name") + ")"
