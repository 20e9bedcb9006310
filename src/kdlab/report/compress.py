"""The compression study's plots and report (reads results; never trains)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

from .document import Report
from .plots import save_figure

MARKERS = {"magnitude": "v", "structured": "s", "lowrank": "D", "kd": "o", "scratch": "x"}


def plot_pareto(results: dict[str, Any], path: Path) -> Path:
    """Test accuracy against parameters (left) and effective MACs (right), one line per method over the budgets
    (mean ± std over seeds); the teacher as a star; points on the Pareto front (by parameters) ringed."""
    table = results["table"]
    methods = list(next(iter(table.values())))
    front = set(results["pareto"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, size_key, xlabel in ((axes[0], "params", "parameters (non-zero for magnitude pruning)"),
                                 (axes[1], "effective_macs", "MACs per sample (zero weights skipped)")):
        for method in methods:
            xs = [row[method][size_key] for row in table.values()]
            ys = [row[method]["test_accuracy"]["mean"] * 100 for row in table.values()]
            es = [row[method]["test_accuracy"]["std"] * 100 for row in table.values()]
            ax.errorbar(xs, ys, yerr=es, marker=MARKERS.get(method, "o"), capsize=3, label=method)
            if size_key == "params":
                for label, x, y in zip(table, xs, ys):
                    if f"{method} @ {label}" in front:
                        ax.scatter([x], [y], s=180, facecolors="none", edgecolors="#222", linewidths=1.2)
        t = results["teacher"]
        ax.scatter([t[size_key if size_key == "params" else "macs"]], [t["test_accuracy"] * 100], marker="*", s=200,
                   color="#222", label="teacher", zorder=3)
        if size_key == "params":
            for b in results["budgets"]:
                ax.axvline(b["target_params"], color="#888", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        # plain numbers at the decades only: the default minor labels (2x10^3, 3x10^3, ...) overlap
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title("accuracy vs parameters (dotted: budgets; ringed: Pareto front)", fontsize=9)
    axes[1].set_title("accuracy vs compute", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Compression at equal budgets on {results['dataset']} (mean ± std over seeds)")
    return save_figure(fig, path)


def plot_finetune_gain(results: dict[str, Any], path: Path) -> Path:
    """Test accuracy of each compressed model right after compression and after fine-tuning, per budget."""
    table = results["table"]
    methods = [m for m in next(iter(table.values())) if next(iter(table.values()))[m]["pre_finetune_test_accuracy"]
               is not None]
    labels = list(table)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(labels) * max(1, len(methods))), 3.8))
    width = 0.8 / max(1, 2 * len(methods))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, method in enumerate(methods):
        pre = [table[b][method]["pre_finetune_test_accuracy"] * 100 for b in labels]
        post = [table[b][method]["test_accuracy"]["mean"] * 100 for b in labels]
        base = [i + (2 * j) * width - 0.4 + width / 2 for i in range(len(labels))]
        ax.bar(base, pre, width, color=colors[j % len(colors)], alpha=0.35, label=f"{method}: compressed")
        ax.bar([x + width for x in base], post, width, color=colors[j % len(colors)], label=f"{method}: fine-tuned")
    ax.set_xticks(range(len(labels)), [f"budget {b}" for b in labels])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Compression before and after fine-tuning")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def _structure(students: list[dict[str, Any]], budget: str, method: str) -> str:
    run = next(s for s in students if s["budget"] == budget and s["method"] == method)
    info = run["hyperparams"].get("compression")
    if info is None:
        model = run["hyperparams"].get("model", {})
        return ", ".join(f"{k}={v}" for k, v in model.items() if k != "name")
    if method == "magnitude":
        return f"sparsity {info['sparsity'] * 100:.1f}%"
    if method == "structured":
        return f"widths {info['widths']}"
    return "ranks " + ", ".join(f"{k}:{v}" for k, v in info["ranks"].items())


def write_compress_report(results: dict[str, Any], out: Path) -> list[str]:
    """Plots plus report.md / report.html; returns the file names written."""
    from ..analysis.stats import paired_difference
    from ..report.format import format_interval, format_pm

    out = Path(out)
    files = ["pareto.png"]
    plot_pareto(results, out / files[0])
    table = results["table"]
    methods = list(next(iter(table.values())))
    if any(row[m]["pre_finetune_test_accuracy"] is not None for row in table.values() for m in methods):
        files.append("finetune_gain.png")
        plot_finetune_gain(results, out / files[1])

    cfg = results["config"]
    st = cfg["students"]
    t = results["teacher"]
    rep = Report(f"kdlab compression study — {results['dataset']}")
    rep.paragraph(
        f"Teacher {t['name']}: {t['params']:,} parameters, {t['macs']:,} MACs, test accuracy "
        f"{t['test_accuracy'] * 100:.2f}% ({cfg['teacher']['epochs']} epochs on "
        f"{cfg['teacher']['train_subset'] or 'all'} training images). Budgets: "
        + ", ".join(f"{b['label']} = {b['target_params']:,} parameters" for b in results["budgets"])
        + f". Every student gets {st['epochs']} epochs on {st['train_subset'] or 'all'} training images: compressed "
        f"models are fine-tuned from the teacher's weights ({st['finetune_optim']['name']}, lr "
        f"{st['finetune_optim']['lr']}, loss {cfg['compression']['finetune_loss']['name']}); the kd and scratch "
        f"students ({st['family']} sized by '{st['size_option']}') start from random weights ({st['scratch_optim']['name']}, "
        f"lr {st['scratch_optim']['lr']}; kd loss {cfg['kd_loss']}). Seeds {cfg['seeds']}, paired: the same seed "
        f"gives every method the same batch order (and kd and scratch the same initial weights). Magnitude-pruned "
        f"models count their non-zero parameters.")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Test accuracy at each budget (%, mean ± std over seeds)")
    rep.table(["budget", *methods],
              [[f"{label} ({results['budgets'][i]['target_params']:,})",
                *(f"{format_pm(row[m]['test_accuracy'])} [{row[m]['params']:,}]" for m in methods)]
               for i, (label, row) in enumerate(table.items())])
    rep.paragraph("Brackets: parameters of the student (non-zero parameters for magnitude pruning).")
    rep.image(files[0], "accuracy against parameters and MACs")
    rep.heading("Students in detail")
    rows = []
    for label, row in table.items():
        for m in methods:
            r = row[m]
            pre = r["pre_finetune_test_accuracy"]
            rows.append([label, m, f"{r['params']:,}", f"{r['macs']:,}", f"{r['effective_macs']:,}",
                         "-" if pre is None else f"{pre * 100:.2f}", format_pm(r["test_accuracy"]),
                         _structure(results["students"], label, m)])
    rep.table(["budget", "method", "params", "MACs (dense)", "MACs (non-zero)", "test acc after compression (%)",
               "test acc (%)", "structure"], rows)
    if len(files) > 1:
        rep.image(files[1], "compression before and after fine-tuning")
    if "kd" in methods:
        rep.heading("KD minus each other method (points, paired, 95% t interval)")
        others = [m for m in methods if m != "kd"]
        diff_rows = []
        for label in table:
            kd = {s["seed"]: s["test_accuracy"] for s in results["students"]
                  if s["budget"] == label and s["method"] == "kd"}
            cells = []
            for m in others:
                other = {s["seed"]: s["test_accuracy"] for s in results["students"]
                         if s["budget"] == label and s["method"] == m}
                seeds = sorted(set(kd) & set(other))
                cells.append(format_interval(paired_difference([kd[s] for s in seeds], [other[s] for s in seeds])))
            diff_rows.append([label, *cells])
        rep.table(["budget", *others], diff_rows)
    rep.paragraph("Pareto front (by parameters; no other student is both smaller and more accurate): "
                  + ", ".join(results["pareto"]) + ".")
    rep.reproduce(results, reused_where="", note=" Rules: docs/studies/compress.md.")
    rep.write(out)
    return files + ["report.md", "report.html"]
