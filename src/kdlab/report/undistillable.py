"""The undistillable-classes study's plots and report (reads results; never trains)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .document import Report
from .plots import save_figure

KD_COLOR, TEST_COLOR, LOST_COLOR, TLLM_COLOR = "#4c78a8", "#9ecae9", "#e45756", "#54a24b"


def _errors(gain: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Means and asymmetric error bars (mean - low, high - mean) in points; no bar where there is no interval."""
    mean = np.asarray(gain["mean"], dtype=float) * 100
    low = np.asarray(gain["low"], dtype=float) * 100
    high = np.asarray(gain["high"], dtype=float) * 100
    err = np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)])
    return mean, err


def _teacher_axis(ax: plt.Axes, params: list[int]) -> None:
    """Log x axis with one labelled tick per teacher (log-scale minor labels collide for close sizes)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(params, [f"{p / 1e6:.2g}M" if p >= 1e6 else f"{p / 1e3:.3g}k" if p >= 1e3 else str(p)
                           for p in params])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("teacher parameters")


def plot_class_gains(results: dict[str, Any], path: Path) -> Path:
    """Per-class gain KD - CE with its interval, one panel per teacher; detected classes in red."""
    teachers = results["teachers"]
    names = results["class_names"]
    split = results["detection"]["split"]
    x = np.arange(len(names))
    fig, axes = plt.subplots(len(teachers), 1, figsize=(max(7, 0.7 * len(names)), 2.4 * len(teachers)),
                             sharex=True, squeeze=False)
    for ax, t in zip(axes[:, 0], teachers):
        mean, err = _errors(t["gain"]["detect"])
        colors = [LOST_COLOR if c in t["undistillable_classes"] else KD_COLOR for c in range(len(names))]
        width = 0.4 if split != "test" else 0.8
        ax.bar(x - (0.2 if split != "test" else 0), mean, width, yerr=err, capsize=2, color=colors,
               label=f"{split} split (detection)")
        if split != "test":
            mean_t, err_t = _errors(t["gain"]["test"])
            ax.bar(x + 0.2, mean_t, width, yerr=err_t, capsize=2, color=TEST_COLOR, label="test split")
        ax.axhline(0, color="k", linewidth=0.8)
        if results["detection"]["threshold"] > 0:
            ax.axhline(-results["detection"]["threshold"] * 100, color=LOST_COLOR, linewidth=0.8, linestyle=":")
        ax.set_ylabel("KD - CE (points)")
        ax.set_title(f"{t['name']} ({t['params']:,} params)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xticks(x, names, rotation=30, ha="right")
    conf = results["detection"]["class_confidence"] * 100
    fig.suptitle(f"Per-class distillation gain, mean over seeds with {conf:.4g}% {results['detection']['interval']} "
                 "interval (red: undistillable)", fontsize=10)
    return save_figure(fig, path)


def plot_undistillable_count(results: dict[str, Any], path: Path) -> Path:
    """Number of undistillable classes against teacher parameters (detection split, test split, point estimate)."""
    teachers = results["teachers"]
    params = [t["params"] for t in teachers]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    split = results["detection"]["split"]
    ax.plot(params, [len(t["undistillable_classes"]) for t in teachers], marker="o", color=LOST_COLOR,
            label=f"reliably negative on {split} (detected)")
    if split != "test":
        ax.plot(params, [len(t["undistillable_on_test"]) for t in teachers], marker="s", color=TEST_COLOR,
                label="reliably negative on test")
    ax.plot(params, [len(t["negative_mean_classes"]) for t in teachers], marker="^", color="#888", linestyle="--",
            label=f"mean gain < 0 on {split} (no interval)")
    _teacher_axis(ax, params)
    ax.set_ylabel("classes")
    ax.set_ylim(bottom=0)
    ax.set_title("Undistillable classes against teacher capacity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_accuracy(results: dict[str, Any], path: Path) -> Path:
    """Overall test accuracy against teacher parameters: CE band, KD and TLLM (mean ± std over seeds)."""
    teachers = results["teachers"]
    params = [t["params"] for t in teachers]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.errorbar(params, [t["kd_test_accuracy"]["mean"] * 100 for t in teachers],
                yerr=[t["kd_test_accuracy"]["std"] * 100 for t in teachers], marker="o", capsize=3, color=KD_COLOR,
                label="KD")
    with_tllm = [t for t in teachers if t["tllm"]]
    if with_tllm:
        ax.errorbar([t["params"] for t in with_tllm], [t["tllm"]["test_accuracy"]["mean"] * 100 for t in with_tllm],
                    yerr=[t["tllm"]["test_accuracy"]["std"] * 100 for t in with_tllm], marker="s", capsize=3,
                    color=TLLM_COLOR, linestyle="none", label="TLLM (teachers with undistillable classes)")
    ce = results["ce_student"]
    ax.axhline(ce["mean"] * 100, color="k", linestyle="--", label="CE only")
    ax.axhspan((ce["mean"] - ce["std"]) * 100, (ce["mean"] + ce["std"]) * 100, color="k", alpha=0.08)
    _teacher_axis(ax, params)
    ax.set_ylabel("student test accuracy (%)")
    ax.set_title("Student accuracy by teacher (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_tllm_vs_kd(results: dict[str, Any], path: Path) -> Path:
    """Per-class TLLM - KD on the test split with its interval, one panel per teacher that has TLLM students."""
    teachers = [t for t in results["teachers"] if t["tllm"]]
    names = results["class_names"]
    x = np.arange(len(names))
    fig, axes = plt.subplots(len(teachers), 1, figsize=(max(7, 0.7 * len(names)), 2.4 * len(teachers)),
                             sharex=True, squeeze=False)
    for ax, t in zip(axes[:, 0], teachers):
        mean, err = _errors(t["tllm"]["gain_vs_kd"])
        colors = [TLLM_COLOR if c in t["tllm"]["classes"] else KD_COLOR for c in range(len(names))]
        ax.bar(x, mean, 0.7, yerr=err, capsize=2, color=colors)
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_ylabel("TLLM - KD (points)")
        ax.set_title(f"{t['name']}: removed {', '.join(names[c] for c in t['tllm']['classes'])}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(x, names, rotation=30, ha="right")
    fig.suptitle("Per-class TLLM - KD on the test split (green: classes TLLM taught with labels only)", fontsize=10)
    return save_figure(fig, path)


def _gain_cell(gain: dict[str, Any], c: int) -> str:
    mean, low, high = gain["mean"][c], gain["low"][c], gain["high"][c]
    if math.isnan(low):
        return f"{mean * 100:+.2f} (no interval)"
    return f"{mean * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}]"


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.2f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_undistillable_report(results: dict[str, Any], out: Path) -> list[str]:
    """Plots + report.md + report.html for the study's ``results`` in ``out``; returns the files written."""
    from ..report.format import format_interval, format_pm

    out = Path(out)
    files = ["class_gains.png", "undistillable_count.png", "accuracy_by_teacher.png"]
    plot_class_gains(results, out / files[0])
    plot_undistillable_count(results, out / files[1])
    plot_accuracy(results, out / files[2])
    if any(t["tllm"] for t in results["teachers"]):
        files.append("tllm_vs_kd.png")
        plot_tllm_vs_kd(results, out / files[3])

    cfg, det, names = results["config"], results["detection"], results["class_names"]
    st = cfg["student"]
    rep = Report(f"kdlab undistillable-classes study — {results['dataset']}")
    rep.paragraph(
        "Zhu et al., \"Teach Less, Learn More: On the Undistillable Classes in Knowledge Distillation\" (NeurIPS "
        "2022): KD can raise overall accuracy while the student gets worse than a label-only student on some "
        "classes. Here every teacher of a capacity family teaches the same student recipe with KD "
        f"({cfg['kd']}); the per-class gain is the KD student's per-class accuracy minus the CE-only student's, "
        f"paired by seed (seeds {cfg['seeds']}: same initial weights and batch order).")
    rep.paragraph(
        f"Teachers: {cfg['teachers']['model']} with capacities {cfg['teachers']['capacities']}, "
        f"{cfg['teachers']['epochs']} epochs on {cfg['teachers']['train_subset'] or 'all'} training images. "
        f"Student: {st['model']} ({results['student_params']:,} params), {st['epochs']} epochs on "
        f"{st['train_subset'] or 'all'} labelled images.")
    rep.paragraph(
        f"Detection rule (fixed in advance): {det['rule']}. Each class is one test, so with no real effect about "
        f"{det['expected_false_detections_per_teacher']:.2f} classes per teacher are expected to be flagged by "
        f"chance (correction: {det['correction']}). Detection uses the {det['split']} split"
        + (", so the test split, where TLLM is evaluated and where detections are replicated, played no part in "
           "choosing the classes." if det["split"] == "val" else
           "; TLLM is evaluated on the same split that chose its classes (optimistic)."))
    rep.heading("Claims")
    rep.claims(results["claims"])

    rep.heading("Undistillable classes per teacher")
    rep.paragraph(f"CE-only student: {format_pm(results['ce_student'])} % test accuracy.")
    rep.table(["teacher", "params", "teacher/student", "teacher test acc (%)", "KD student (%)", "KD - CE (points)",
               f"undistillable ({det['split']})", "also on test", "mean gain < 0"],
              [[t["name"], f"{t['params']:,}", f"{t['params_ratio']:.1f}x" if t["params_ratio"] else "–",
                f"{t['test_accuracy'] * 100:.2f}", format_pm(t["kd_test_accuracy"]), format_interval(t["kd_minus_ce"]),
                ", ".join(names[c] for c in t["undistillable_classes"]) or "none",
                ", ".join(names[c] for c in t["replicated_on_test"]) or "none",
                str(len(t["negative_mean_classes"]))] for t in results["teachers"]])
    rep.image(files[0], "per-class gain KD - CE with intervals")
    rep.image(files[1], "number of undistillable classes against teacher capacity")

    rows = []
    for t in results["teachers"]:
        prof = t["teacher_profile"]
        dist = prof["distill_set"]
        test_acc = prof["test_accuracy_per_class"]
        mean_test = [v for v in test_acc if v is not None]
        for c in t["undistillable_classes"]:
            shift = t["confusion_shift"][str(c)]["destinations"]
            cls = dist["classes"][str(c)]
            avg = dist["mean_over_classes"]
            label = names[c] if names[c] == str(c) else f"{c} {names[c]}"
            rows.append([t["name"], label, _gain_cell(t["gain"]["detect"], c), _gain_cell(t["gain"]["test"], c),
                         ", ".join(f"{d['name']} {d['shift'] * 100:+.1f}" for d in shift) or "–",
                         f"{_pct(test_acc[c])} / {_pct(sum(mean_test) / len(mean_test) if mean_test else None)}",
                         f"{_num(cls['target_prob'])} / {_num(avg['target_prob'])}",
                         f"{_num(cls['derived_std'], 4)} / {_num(avg['derived_std'], 4)}",
                         f"{_num(cls['nongt_entropy'])} / {_num(avg['nongt_entropy'])}"])
    rep.heading("What happens to the undistillable classes")
    if rows:
        temp = results["teachers"][0]["teacher_profile"]["distill_set"]["temperature"]
        rep.paragraph(
            "Gains in points with their intervals. 'Lost to': where KD sends the class's test samples (mean over "
            "seeds of the row of confusion_KD - confusion_CE, points of the class's samples). Teacher columns: "
            f"this class / mean over all classes; dark knowledge at T = {temp:g} on the students' training inputs "
            "(what is distilled), teacher accuracy on test.")
        rep.table(["teacher", "class", f"gain on {det['split']}", "gain on test", "lost to (points)",
                   "teacher test acc (%)", "teacher p(GT)", "derived std", "non-GT entropy"], rows)
    else:
        rep.paragraph("No class met the detection rule for any teacher.")

    rep.heading("Remedy: TLLM (teacher dropped on the undistillable classes' samples)")
    with_tllm = [t for t in results["teachers"] if t["tllm"]]
    if with_tllm:
        rep.table(["teacher", "removed", "KD (%)", "TLLM (%)", "TLLM - KD (points)", "TLLM - CE (points)",
                   "TLLM - KD on removed classes (points)"],
                  [[t["name"], ", ".join(names[c] for c in t["tllm"]["classes"]), format_pm(t["kd_test_accuracy"]),
                    format_pm(t["tllm"]["test_accuracy"]), format_interval(t["tllm"]["minus_kd"]),
                    format_interval(t["tllm"]["minus_ce"]),
                    ", ".join(f"{names[int(c)]} {v * 100:+.1f}" for c, v in
                              t["tllm"]["removed_classes_minus_kd"].items())] for t in with_tllm])
        rep.image(files[3], "per-class TLLM - KD")
    else:
        rep.paragraph("No teacher had undistillable classes, so TLLM equals KD and was not trained.")
    rep.image(files[2], "student accuracy by teacher: CE, KD, TLLM")
    rep.reproduce(results)
    rep.write(out)
    return files + ["report.md", "report.html"]
