"""Plots and reports of the nasty-teacher study and of the distillability audit (read results; never train)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .document import Report
from .plots import bar_chart, save_figure

STUDENT_LABELS = {
    "ce": "CE only",
    "kd_normal": "KD from normal",
    "kd_nasty": "KD from nasty",
    "skeptical_normal": "skeptical from normal",
    "skeptical_nasty": "skeptical from nasty",
}


def plot_dark_knowledge_curves(series: dict[str, dict[str, dict[str, float]]], path: Path, title: str) -> Path:
    """Derived std and non-GT entropy against temperature, one line per model: series[model][metric][tau]."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, metrics in series.items():
        for ax, metric in zip(axes, ("derived_std", "nongt_entropy")):
            temps = sorted(metrics[metric], key=float)
            ax.plot([float(t) for t in temps], [metrics[metric][t] for t in temps], marker="o", label=name)
    for ax, label in zip(axes, ("derived std of non-GT probabilities", "non-GT entropy (normalised)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("temperature tau")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_outputs_by_normal_rank(teachers: list[dict[str, Any]], temperature: float, path: Path) -> Path:
    """Average tempered output per class, classes ranked by the normal teacher, one bar group per teacher.

    A normal teacher's bars fall monotonically by construction; a nasty teacher that moved probability mass to
    classes the normal teacher finds unlikely shows bumps further right (the paper's multi-peaked outputs).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(teachers)
    for i, t in enumerate(teachers):
        probs = t["probs_by_normal_rank"]
        ax.bar([k + i * width for k in range(len(probs))], probs, width=width, label=t["name"])
    ax.set_xlabel("class rank by the normal teacher's probability (0 = its top class)")
    ax.set_ylabel(f"mean softmax(z / {temperature:g})")
    ax.set_title("Average tempered output on the test split")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def write_nasty_report(results: dict[str, Any], out: Path) -> list[str]:
    """PNG plots + report.md + report.html of the nasty study into ``out``; returns the file names."""
    from ..report.format import format_interval, format_pm

    out = Path(out)
    cfg = results["config"]
    files = ["students.png", "dark_knowledge.png", "outputs_by_normal_rank.png"]
    keys = list(results["table"])
    bar_chart([STUDENT_LABELS.get(k, k) for k in keys], [results["table"][k]["mean"] * 100 for k in keys],
              [results["table"][k]["std"] * 100 for k in keys], out / files[0], "student test accuracy (%)",
              "Students by teacher and method (mean ± std over seeds)")
    plot_dark_knowledge_curves({t["name"]: t for t in results["teachers"]}, out / files[1],
                               "Dark knowledge of the normal and the nasty teacher (students' training inputs)")
    plot_outputs_by_normal_rank(results["teachers"], cfg["kd"]["temperature"], out / files[2])

    n, st = cfg["nasty"], cfg["student"]
    rep = Report(f"kdlab nasty-teacher study — {results['dataset']}")
    rep.paragraph(
        f"Normal teacher: {cfg['teacher']['model']} trained {cfg['teacher']['epochs']} epochs. Nasty teacher: the same "
        f"network {'fine-tuned from the normal teacher' if n['start'] == 'teacher' else 'trained from scratch'} for "
        f"{n['epochs']} epochs with L = CE - omega tau^2 KL(nasty || adversary), tau = {n['temperature']:g}, omega = "
        f"{n['omega']:g}, the frozen normal teacher as adversary (Ma et al., ICLR 2021); the protected model is the "
        f"last epoch. Students: {st['model']} trained {st['epochs']} epochs on {st['train_subset'] or 'all'} labelled "
        f"images, seeds {cfg['seeds']} (paired: same initial weights and batches per seed); KD at T = "
        f"{cfg['kd']['temperature']:g}, alpha = {cfg['kd']['alpha']:g}. Skeptical students (Kundu et al., NeurIPS "
        f"2021) receive the same KD loss at an auxiliary head on tap '{st['tap']}' and CE at their final head.")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Teachers")
    rep.table(["teacher", "test acc (%)", "derived std @4", "non-GT entropy @4", "target prob @4", "inherent variance",
               "test ECE"],
              [[t["name"], f"{t['test_accuracy'] * 100:.2f}", f"{t['derived_std'].get('4.0', float('nan')):.4f}",
                f"{t['nongt_entropy'].get('4.0', float('nan')):.3f}",
                f"{t['target_prob'].get('4.0', float('nan')):.3f}", f"{t['inherent_variance']:.2f}",
                f"{t['ece']:.3f}"] for t in results["teachers"]])
    ac = results["affinity_consistency"]
    rep.paragraph(f"tau^2 KL(nasty || normal) on the test split at tau = {cfg['kd']['temperature']:g}: "
                  f"{results['kl_nasty_to_normal_test']:.3f}. Affinity consistency between the two teachers "
                  f"(Spearman over off-diagonal entries): {ac['spearman'] if ac['spearman'] is None else round(ac['spearman'], 3)}"
                  f"; top-{ac['top_k']} overlap {ac['topk_overlap'] if ac['topk_overlap'] is None else round(ac['topk_overlap'], 3)}.")
    rep.heading("Students: test accuracy (%), mean ± std over seeds")
    rep.table(["student", "test acc (%)", "n"],
              [[STUDENT_LABELS.get(k, k), format_pm(v), str(v["n"])] for k, v in results["table"].items()])
    rep.heading("Paired differences (points, 95% t interval)")
    rep.table(["difference", "mean [interval]"],
              [[k, format_interval(v)] for k, v in results["differences"].items()])
    rep.image(files[0], "students by teacher and method")
    rep.image(files[1], "derived std and non-GT entropy against temperature")
    rep.image(files[2], "average tempered output, classes ranked by the normal teacher")
    rep.reproduce(results)
    rep.write(out)
    return files + ["report.md", "report.html"]


def write_audit_report(results: dict[str, Any], out: Path) -> list[str]:
    """PNG plots + report.md + report.html of a distillability audit into ``out``; returns the file names."""
    from ..report.format import format_interval, format_pm

    out = Path(out)
    cfg = results["config"]
    files = []
    for label, probe in results["probes"].items():
        file = f"probe_{label}.png"
        keys = ["ce", *probe["methods"]]
        stats = [probe["ce"], *(probe["methods"][m]["test_accuracy"] for m in probe["methods"])]
        bar_chart(keys, [s["mean"] * 100 for s in stats], [s["std"] * 100 for s in stats], out / file,
                  "student test accuracy (%)", f"Probe '{label}': students of the audited model")
        files.append(file)
    series = {"model": results["model"]["test"]}
    if results.get("reference"):
        series["reference"] = results["reference"]["test"]
    files.append("dark_knowledge.png")
    plot_dark_knowledge_curves(series, out / files[-1], "Dark knowledge on the test split")

    m = results["model"]
    rep = Report(f"kdlab distillability audit — {m['label']}")
    rep.paragraph(
        f"Model: {m['source']} ({m['params']:,} parameters), test accuracy {m['test_accuracy'] * 100:.2f}% on "
        f"{results['dataset']}. Probe students of {len(results['probes'])} architectures are trained from it by KD "
        f"(T in {cfg['temperatures']}, alpha {cfg['alpha']:g}), by CE alone, and (if enabled) as skeptical students "
        f"(the counter-attack against nasty teachers), seeds {cfg['seeds']}, paired.")
    rep.paragraph("Protection margin = best KD student - CE-only student (paired, points); <= 0 means a copier learns "
                  "nothing from the model beyond the labels. Attack margin = the same with the skeptical student "
                  "competing. The best temperature is picked by mean accuracy, which favours the attacker.")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Protection by probe")
    rep.table(["probe", "CE (%)", "best KD", "protection margin", "verdict", "best attack", "attack margin", "verdict"],
              [[label, format_pm(p["ce"]), p["best_kd"], format_interval(p["protection_margin"]),
                p["protection_verdict"], p["best_attack"], format_interval(p["attack_margin"]), p["attack_verdict"]]
               for label, p in results["probes"].items()])
    for label, p in results["probes"].items():
        rep.heading(f"Probe '{label}': {p['model']}", level=3)
        rep.table(["method", "test acc (%)", "minus CE"],
                  [["ce", format_pm(p["ce"]), "—"]]
                  + [[k, format_pm(v["test_accuracy"]), format_interval(v["minus_ce"])]
                     for k, v in p["methods"].items()])
    rep.heading("Dark knowledge (test split)")
    rows = []
    for role in ("model", "reference"):
        r = results.get(role)
        if not r:
            continue
        for t in sorted(r["test"]["derived_std"], key=float):
            rows.append([role, t, f"{r['test']['derived_std'][t]:.4f}", f"{r['test']['nongt_entropy'][t]:.3f}",
                         f"{r['test']['target_prob'][t]:.3f}"])
    rep.table(["model", "tau", "derived std", "non-GT entropy", "target prob"], rows)
    if results.get("affinity_consistency"):
        ac = results["affinity_consistency"]
        kl = results["kl_to_reference"]
        rep.paragraph(f"Against the reference model: affinity Spearman {ac['spearman']}, Kendall {ac['kendall']}, "
                      f"top-{ac['top_k']} overlap {ac['topk_overlap']}; tau^2 KL(model || reference) by tau: "
                      + ", ".join(f"{t}: {v:.3f}" for t, v in kl.items()) + ".")
    for file in files:
        rep.image(file, file.removesuffix(".png").replace("_", " "))
    rep.reproduce(results)
    rep.write(out)
    return files + ["report.md", "report.html"]
