"""The capacity study's plots and report (reads results; never trains)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .document import Report
from .plots import save_figure


def plot_capacity_curve(results: dict[str, Any], path: Path) -> Path:
    """Student accuracy against teacher parameters per method (mean ± std), CE as a band; teacher accuracy below."""
    teachers = results["teachers"]
    params = [t["params"] for t in teachers]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    methods = [m["label"] for m in results["config"]["methods"]]
    colors = plt.get_cmap("tab20").colors
    markers = "os^vDP*Xhd<>"
    for i, method in enumerate(methods):
        cells = [(t["params"], results["table"][t["name"]].get(method)) for t in teachers]
        cells = [(p, c["test_accuracy"]) for p, c in cells if c is not None]
        top.errorbar([p for p, _ in cells], [a["mean"] * 100 for _, a in cells], yerr=[a["std"] * 100 for _, a in cells],
                     marker=markers[i % len(markers)], color=colors[i % len(colors)], capsize=3, label=method)
    ce = results["ce_student"]
    top.axhline(ce["mean"] * 100, color="k", linestyle="--", label="CE only")
    top.axhspan((ce["mean"] - ce["std"]) * 100, (ce["mean"] + ce["std"]) * 100, color="k", alpha=0.08)
    top.set_ylabel("student test accuracy (%)")
    top.set_title("Capacity-mismatch curve (mean ± std over seeds)")
    top.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    top.grid(alpha=0.3)
    bottom.plot(params, [t["test_accuracy"] * 100 for t in teachers], marker="s", color="#444")
    bottom.set_ylabel("teacher test acc (%)")
    bottom.set_xlabel("teacher parameters")
    bottom.set_xscale("log")
    bottom.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_dark_knowledge(results: dict[str, Any], path: Path) -> Path:
    """Derived average and derived std of the non-GT probabilities against temperature, one line per teacher."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for t in results["teachers"]:
        temps = sorted(t["derived_std"], key=float)
        x = [float(k) for k in temps]
        axes[0].plot(x, [t["derived_average"][k] for k in temps], marker="o", label=t["name"])
        axes[1].plot(x, [t["derived_std"][k] for k in temps], marker="o", label=t["name"])
    for ax, name in zip(axes, ("derived average", "derived std")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("temperature tau")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle("Non-ground-truth probabilities of each teacher on the students' training inputs")
    return save_figure(fig, path)


def write_capacity_report(results: dict[str, Any], profiles: list[dict[str, Any]], out: Path) -> list[str]:
    from ..analysis import plot_affinity_heatmap, plot_consistency_matrix
    from ..report.format import format_interval, format_pm

    files = ["capacity_curve.png", "dark_knowledge.png", "affinity_consistency.png"]
    plot_capacity_curve(results, out / files[0])
    plot_dark_knowledge(results, out / files[1])
    import torch

    labels = results["affinity_consistency"]["labels"]
    plot_consistency_matrix(torch.tensor(results["affinity_consistency"]["spearman_matrix"]),
                            [f"T{i + 1}" for i in range(len(labels))], out / files[2],
                            title="Affinity consistency between teachers (Spearman)")
    for i, profile in enumerate(profiles):
        name = f"affinity_teacher{i + 1}.png"
        plot_affinity_heatmap(profile["affinity"], profile["class_names"], out / name,
                              title=f"T{i + 1} {profile['label']}: class affinity")
        files.append(name)

    cfg = results["config"]
    st = cfg["student"]
    rep = Report(f"kdlab capacity study — {results['dataset']}")
    rep.paragraph(
        f"Teacher family: {cfg['teachers']['model']} with capacities {cfg['teachers']['capacities']}, each trained "
        f"{cfg['teachers']['epochs']} epochs on {cfg['teachers']['train_subset'] or 'all'} training images. Student: "
        f"{st['model']} trained {st['epochs']} epochs on {st['train_subset'] or 'all'} labelled images (a subset of "
        f"the teachers' training data), seeds {cfg['seeds']}; for a given seed every method starts from the same "
        f"initial weights and sees the same batches, so differences are paired. Dark-knowledge statistics are "
        f"measured on the students' training inputs (what is distilled).")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Teachers")
    rep.table(["", "teacher", "params", "test acc (%)", "train acc on distill set (%)", "derived std @4",
               "derived avg @4", "non-GT entropy @4", "inherent variance", "test ECE"],
              [[f"T{i + 1}", t["name"], f"{t['params']:,}", f"{t['test_accuracy'] * 100:.2f}",
                f"{t['train_accuracy_distill_set'] * 100:.2f}", f"{t['derived_std'].get('4.0', float('nan')):.4f}",
                f"{t['derived_average'].get('4.0', float('nan')):.4f}",
                f"{t['nongt_entropy'].get('4.0', float('nan')):.3f}", f"{t['inherent_variance']:.2f}",
                f"{t['ece']:.3f}"] for i, t in enumerate(results["teachers"])])
    methods = [m["label"] for m in cfg["methods"]]
    rep.heading("Student test accuracy (%), mean ± std over seeds")
    rep.paragraph(f"CE only (no teacher): {format_pm(results['ce_student'])}. Rows: teachers; columns: methods "
                  "(roles: " + ", ".join(f"{m['label']}={m['role']}" for m in cfg["methods"]) + ").")
    rep.table(["method", *[f"T{i + 1}" for i in range(len(results["table"]))]],
              [[m, *(format_pm(row[m]["test_accuracy"]) if m in row else "—" for row in results["table"].values())]
               for m in methods])
    rep.heading("Best method per teacher")
    rep.table(["teacher", "best method", "accuracy (%)", "gain over best KD (points, 95% CI)"],
              [[t, b["method"], format_pm(b["test_accuracy"]),
                f"{format_interval(b['minus_best_kd'])} vs {b['best_kd']}" if b["minus_best_kd"] else "—"]
               for t, b in results["best_method_per_teacher"].items()])
    rep.heading("Paired difference against the CE student (points, 95% t interval)")
    rep.table(["method", *[f"T{i + 1}" for i in range(len(results["table"]))]],
              [[m, *(format_interval(row[m]["minus_ce"]) if m in row else "—" for row in results["table"].values())]
               for m in methods])
    if results.get("assistants"):
        rep.heading("TAKD chains")
        chosen = {(s["teacher"], s["assistant"]) for s in results["students"] if s.get("selected")}
        rep.table(["teacher", "assistant", "assistant test acc (%)", "selected (best validation)"],
                  [[a["teacher"], a["assistant"], f"{a['test_accuracy'] * 100:.2f}",
                    "yes" if (a["teacher"], a["assistant"]) in chosen else ""] for a in results["assistants"]])
    rep.image(files[0], "capacity-mismatch curve")
    rep.image(files[1], "derived average and derived std against temperature")
    rep.heading("Class affinity")
    rep.image(files[2], "teacher-by-teacher affinity consistency (Spearman)")
    for i, name in enumerate(files[3:]):
        rep.image(name, f"T{i + 1} affinity")
    rep.heading("Further analysis")
    rep.paragraph("Per-class transfer for each teacher (which classes KD hurts, with intervals, and TLLM) is in "
                  "undistillable/report.html beside this report: `make run` writes it with `kdlab study undistillable "
                  "--out <this dir>/undistillable --set store=<same store>`, which reuses this study's runs.")
    rep.bullets([f"T{i + 1} {t['name']}: see undistillable/report.html, section for this teacher"
                 for i, t in enumerate(results["teachers"])])
    rep.reproduce(results)
    rep.write(out)
    return files + ["report.md", "report.html"]
