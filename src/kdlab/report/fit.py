"""The fit study's plots and report (reads results; never trains)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .document import Report
from .plots import save_figure

VERDICT_COLORS = {"under-capacity": "#4c78a8", "good fit": "#54a24b", "over-capacity": "#e45756"}


def _band(ax, x, mean, std, label, color, style="-"):
    ax.plot(x, mean, style, color=color, label=label)
    if std is not None and any(s > 0 for s in std):
        ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color=color,
                        alpha=0.15, linewidth=0)


def plot_learning_curves(models: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Train (solid) and validation (dashed) accuracy and loss per epoch, one column per model (mean ± std)."""
    n = len(models)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.6), squeeze=False, sharey="row")
    for j, m in enumerate(models):
        c = m["curves"]
        x = list(range(1, len(c["train_acc"]) + 1))
        color = VERDICT_COLORS.get(m["verdict"]["verdict"], "#444")
        top, bottom = axes[0][j], axes[1][j]
        _band(top, x, [v * 100 for v in c["train_acc"]], [v * 100 for v in c.get("train_acc_std", [])] or None,
              "train", color)
        _band(top, x, [v * 100 for v in c["val_acc"]], [v * 100 for v in c.get("val_acc_std", [])] or None,
              "validation", color, "--")
        _band(bottom, x, c["train_loss"], c.get("train_loss_std"), "train", color)
        _band(bottom, x, c["val_loss"], c.get("val_loss_std"), "validation", color, "--")
        top.set_title(f"{m['name']}\n{m['params']:,} params: {m['verdict']['verdict']}", fontsize=8)
        bottom.set_xlabel("epoch")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[1][0].set_ylabel("cross-entropy")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_validation_curve(results: dict[str, Any], path: Path) -> Path:
    """Final train, final validation and best-checkpoint validation accuracy against parameters; the gap below."""
    models = results["models"]
    params = [m["params"] for m in models]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for key, label, style in (("final_train_accuracy", "train (last epoch)", "-"),
                              ("final_val_accuracy", "validation (last epoch)", "--"),
                              ("best_val_accuracy", "validation (best checkpoint)", ":")):
        top.errorbar(params, [m[key]["mean"] * 100 for m in models], yerr=[m[key]["std"] * 100 for m in models],
                     linestyle=style, marker="o", capsize=3, label=label, color="#333")
    for m in models:
        top.scatter([m["params"]], [m["final_val_accuracy"]["mean"] * 100], s=90, zorder=3,
                    color=VERDICT_COLORS.get(m["verdict"]["verdict"], "#444"))
    rec = results["recommended"]
    top.axvline(rec["params"], color="#54a24b", alpha=0.5, linewidth=3, label=f"recommended: {rec['name']}")
    for verdict, color in VERDICT_COLORS.items():
        top.scatter([], [], color=color, s=60, label=verdict)
    top.set_ylabel("accuracy (%)")
    top.set_title("Validation curve: accuracy against capacity (mean ± std over seeds)")
    top.legend(fontsize=7)
    top.grid(alpha=0.3)
    bottom.errorbar(params, [m["final_gap"]["mean"] * 100 for m in models],
                    yerr=[m["final_gap"]["std"] * 100 for m in models], marker="s", capsize=3, color="#444")
    thresholds = models[0]["verdict"]["thresholds"]
    bottom.axhline(thresholds["overfit_gap"] * 100, color="#e45756", linestyle=":", label="overfit_gap")
    bottom.axhline(thresholds["large_gap"] * 100, color="#e45756", linestyle="--", label="large_gap")
    bottom.set_ylabel("train - val gap (points)")
    bottom.set_xlabel("parameters")
    bottom.set_xscale("log")
    bottom.legend(fontsize=7)
    bottom.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_regularisation(reg: dict[str, Any], path: Path) -> Path:
    """Left: train/val accuracy curves of each arm (early stopping marked); right: test accuracy and gap per arm."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    arms = reg["arms"]
    labels = list(arms)
    for i, (label, arm) in enumerate(arms.items()):
        if label == "early_stopping":
            continue
        c = arm["curves"]
        x = list(range(1, len(c["train_acc"]) + 1))
        color = colors[i % len(colors)]
        left.plot(x, [v * 100 for v in c["train_acc"]], "-", color=color, label=f"{label} train")
        left.plot(x, [v * 100 for v in c["val_acc"]], "--", color=color, label=f"{label} val")
    for p in arms["early_stopping"]["points"]:
        left.axvline(p["epoch"], color="#888", linestyle=":", linewidth=1)
    left.set_xlabel("epoch (dotted: early-stopping epoch of each seed)")
    left.set_ylabel("accuracy (%, mean over seeds)")
    left.set_title(f"{reg['model']}: learning curves per arm")
    left.legend(fontsize=7, ncol=2)
    left.grid(alpha=0.3)
    x = list(range(len(labels)))
    width = 0.4
    right.bar([i - width / 2 for i in x], [arms[a]["test_accuracy"]["mean"] * 100 for a in labels], width,
              yerr=[arms[a]["test_accuracy"]["std"] * 100 for a in labels], capsize=3, label="test accuracy (%)",
              color="#4c78a8")
    twin = right.twinx()
    twin.bar([i + width / 2 for i in x], [arms[a]["gap"]["mean"] * 100 for a in labels], width,
             yerr=[arms[a]["gap"]["std"] * 100 for a in labels], capsize=3, label="train-val gap (points)",
             color="#e45756")
    low = min(arms[a]["test_accuracy"]["mean"] for a in labels) * 100
    right.set_ylim(max(0.0, low - 10), 108)  # headroom for the legend
    twin.set_ylim(min(0.0, min(arms[a]["gap"]["mean"] for a in labels) * 140),
                  max(1.0, max(arms[a]["gap"]["mean"] + arms[a]["gap"]["std"] for a in labels) * 140))
    right.set_xticks(x, labels, rotation=20, ha="right")
    right.set_ylabel("test accuracy (%)")
    twin.set_ylabel("train - val gap (points)")
    right.set_title("evaluated model of each arm")
    handles = right.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    right.legend(handles, ["test accuracy (left axis)", "gap (right axis)"], fontsize=7, loc="upper left", ncol=2)
    return save_figure(fig, path)


def plot_cross_validation(cv: dict[str, Any], path: Path) -> Path:
    """Cross-validated accuracy (mean ± std over folds, fold scores as dots) and final train accuracy vs params."""
    models = cv["models"]
    params = [m["params"] for m in models]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.errorbar(params, [m["cv_accuracy"]["mean"] * 100 for m in models],
                yerr=[m["cv_accuracy"]["std"] * 100 for m in models], marker="o", capsize=3, color="#333",
                label="held-out fold accuracy (mean ± std over folds)")
    for m in models:
        ax.scatter([m["params"]] * len(m["fold_scores"]), [s * 100 for s in m["fold_scores"]], s=12, alpha=0.5,
                   color=VERDICT_COLORS.get(m["verdict"]["verdict"], "#444"))
    ax.plot(params, [m["curves"]["train_acc"][-1] * 100 for m in models], "-s", color="#888",
            label="train accuracy (last epoch)")
    rec = cv["recommended"]
    ax.axvline(rec["params"], color="#54a24b", alpha=0.5, linewidth=3, label=f"recommended: {rec['name']}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{cv['k']}-fold cross-validation on {cv['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_fit_report(results: dict[str, Any], out: Path) -> list[str]:
    """All plots plus report.md / report.html; returns the file names written."""
    from ..report.format import format_interval, format_pm

    out = Path(out)
    files = ["learning_curves.png", "validation_curve.png"]
    plot_learning_curves(results["models"], out / files[0], f"Learning curves on {results['dataset']} "
                                                              f"(mean ± std over seeds)")
    plot_validation_curve(results, out / files[1])
    reg_files = []
    for i, reg in enumerate(results["regularisation"]):
        name = f"regularisation_{i + 1}.png"
        plot_regularisation(reg, out / name)
        reg_files.append(name)
    cv = results["cross_validation"]
    cv_files = []
    if cv is not None:
        cv_files = ["cross_validation.png", "cv_learning_curves.png"]
        plot_cross_validation(cv, out / cv_files[0])
        plot_learning_curves(cv["models"], out / cv_files[1], f"Learning curves on {cv['dataset']} "
                                                              f"(held-out fold as validation; mean over folds and "
                                                              f"seeds)")
    files += reg_files + cv_files

    cfg = results["config"]
    sw = cfg["sweep"]
    rep = Report(f"kdlab fit study — {results['dataset']}")
    rep.paragraph(
        f"Capacity sweep: {sw['model']} with capacities {sw['capacities']}, each trained {sw['epochs']} epochs on "
        f"{sw['train_subset'] or 'all'} training images without regularisation (weight decay "
        f"{sw['optim']['weight_decay']}, dropout {sw['model'].get('dropout', 0.0)}), seeds {cfg['seeds']}. "
        f"Verdicts apply the rules of kdlab.analysis.fit_verdict to the seed-mean learning curves, with the best "
        f"final train accuracy of the sweep ({results['reference_train_acc'] * 100:.2f}%) as the reference.")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Capacity sweep")
    rep.table(["model", "params", "final train acc (%)", "final val acc (%)", "gap (points)", "gap trend / epoch",
               "best val acc (%)", "test acc, best ckpt (%)", "verdict (rule)", "per seed"],
              [[m["name"], f"{m['params']:,}", format_pm(m["final_train_accuracy"]),
                format_pm(m["final_val_accuracy"]), format_pm(m["final_gap"]),
                f"{m['verdict']['gap_trend'] * 100:+.2f}", format_pm(m["best_val_accuracy"]),
                format_pm(m["test_accuracy"]), f"{m['verdict']['verdict']} ({m['verdict']['rule']})",
                ", ".join(m["seed_verdicts"].values())] for m in results["models"]])
    rec = results["recommended"]
    rep.paragraph(f"Recommended capacity: {rec['name']} ({rec['params']:,} params) — the smallest model whose mean "
                  f"best-checkpoint validation accuracy ({rec['score'] * 100:.2f}%) is within "
                  f"{rec['tolerance'] * 100:.2f} points ({rec['rule']}) of the best, {rec['best_name']} "
                  f"({rec['best_score'] * 100:.2f}%).")
    rep.image(files[0], "learning curves per model")
    rep.image(files[1], "validation curve against capacity")
    rep.heading("Regularisation of the over-capacity models")
    rep.paragraph("Arms: none = the unregularised run at its last epoch; early_stopping = the same run stopped "
                  "after `patience` epochs without a new best validation accuracy, keeping its best epoch; each "
                  "remedy = a new run with that change, at its last epoch. Same seeds, so differences are paired.")
    for reg, name in zip(results["regularisation"], reg_files):
        rep.heading(f"{reg['model']} (sweep verdict: {reg['sweep_verdict']})", level=3)
        rep.table(["arm", "epoch (per seed)", "train acc (%)", "val acc (%)", "gap (points)", "test acc (%)",
                   "gap - none", "test - none", "verdict"],
                  [[label, ", ".join(str(p["epoch"]) for p in arm["points"]), format_pm(arm["train_accuracy"]),
                    format_pm(arm["val_accuracy"]), format_pm(arm["gap"]), format_pm(arm["test_accuracy"]),
                    format_interval(arm["minus_none"]["gap"]), format_interval(arm["minus_none"]["test_accuracy"]),
                    f"{arm['verdict']['verdict']} ({arm['verdict']['rule']})"]
                   for label, arm in reg["arms"].items()])
        rep.image(name, f"regularisation of {reg['model']}")
    if cv is not None:
        rep.heading(f"{cv['k']}-fold cross-validation on {cv['dataset']}")
        cv_cfg = cfg["cv"]
        rep.paragraph(f"{cv_cfg['model']} with capacities {cv_cfg['capacities']}, {cv_cfg['epochs']} epochs, seeds "
                      f"{cv['seeds']}; stratified folds of the {cv['num_train']} training images. Score: the "
                      f"held-out fold's accuracy after the last epoch (seed mean per fold), mean ± std over folds.")
        rep.table(["model", "params", "CV accuracy (%)", "standard error (points)", "fold scores (%)", "verdict"],
                  [[m["name"], f"{m['params']:,}", format_pm(m["cv_accuracy"]), f"{m['standard_error'] * 100:.2f}",
                    ", ".join(f"{s * 100:.1f}" for s in m["fold_scores"]),
                    f"{m['verdict']['verdict']} ({m['verdict']['rule']})"] for m in cv["models"]])
        r = cv["recommended"]
        rep.paragraph(f"Recommended capacity on {cv['dataset']}: {r['name']} ({r['params']:,} params, "
                      f"{r['score'] * 100:.2f}%), tolerance {r['tolerance'] * 100:.2f} points ({r['rule']}).")
        rep.image(cv_files[0], "cross-validated accuracy against capacity")
        rep.image(cv_files[1], "learning curves of the cross-validation sweep")
    rep.reproduce(results, reused_where="", note=" Rules: docs/studies/fit.md.")
    rep.write(out)
    return files + ["report.md", "report.html"]
