"""Plots and reports of the theory and multi-view studies (read results; never train)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from .document import Report
from .plots import save_figure


def plot_bound_terms(results: dict[str, Any], path: Path) -> Path:
    """Per student size: the bound and its three groups (log scale), the teacher's test error and own bound."""
    bound = results["bound"]
    labels = list(bound["summary"])
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key, name, style in (("total", "bound (total)", "o-"), ("training", "training surrogate", "s--"),
                             ("distillation_error", "8 x distillation error", "^--"),
                             ("distillation_complexity", "complexity terms", "v--"),
                             ("student_test_error", "student test error", "d:")):
        means = [max(bound["summary"][s][key]["mean"], 1e-6) for s in labels]
        stds = [bound["summary"][s][key]["std"] for s in labels]
        ax.errorbar(list(x), means, yerr=stds, fmt=style, capsize=3, label=name)
    ax.axhline(bound["teacher"]["test_error"], color="k", label="teacher test error")
    ax.axhline(bound["teacher"]["own_bound"]["total"], color="#b3261e", linestyle="-.", label="teacher's own bound")
    ax.axhline(1.0, color="#888", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(list(x), labels, rotation=15, ha="right")
    ax.set_ylabel("error / bound term")
    ax.set_title("Teacher test error <= training + distillation error + complexity (per student)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_risk_variance(results: dict[str, Any], path: Path) -> Path:
    """Variance of each empirical risk against dataset size (log-log) and the ratios against the one-hot risk."""
    rows = results["risk_variance"]["rows"]
    n = [r["n"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, name in (("onehot", "one-hot R_hat"), ("bayes", "Bayes-distilled R*_hat"),
                      ("teacher", "teacher-distilled")):
        if key not in rows[0]:
            continue
        v = [r[key]["variance"] for r in rows]
        err = [[r[key]["variance"] - r[key]["low"] for r in rows], [r[key]["high"] - r[key]["variance"] for r in rows]]
        left.errorbar(n, v, yerr=err, marker="o", capsize=3, label=name)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("dataset size n")
    left.set_ylabel("variance over resampled datasets")
    left.set_title("V[empirical risk] (95% chi-square intervals)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    for key, name in (("bayes_over_onehot", "Bayes / one-hot"), ("teacher_over_onehot", "teacher / one-hot")):
        if key not in rows[0]:
            continue
        q = [r[key] for r in rows]
        right.errorbar(n, [v["ratio"] for v in q], yerr=[[v["ratio"] - v["low"] for v in q],
                                                          [v["high"] - v["ratio"] for v in q]],
                       marker="o", capsize=3, label=name)
    right.axhline(1.0, color="k", linestyle="--")
    right.set_xscale("log")
    right.set_xlabel("dataset size n")
    right.set_ylabel("variance ratio")
    right.set_title("Ratio (95% paired bootstrap intervals)")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_ntk(results: dict[str, Any], path: Path) -> Path:
    """NTK drift and linearisation error against width (mean +- std over seeds)."""
    summary = results["ntk"]["summary"]
    widths = [int(w) for w in summary]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((left, "drift", "||K_T - K_0||_F / ||K_0||_F"),
                           (right, "linearization_error", "||f_T - f_lin||_F / ||f_T - f_0||_F (test)")):
        ax.errorbar(widths, [summary[str(w)][key]["mean"] for w in widths],
                    yerr=[summary[str(w)][key]["std"] for w in widths], marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    left.set_ylabel("relative change")
    fig.suptitle("Wider networks: the NTK moves less and kernel regression predicts the network")
    return save_figure(fig, path)


def write_theory_report(results: dict[str, Any], out: Path) -> list[str]:
    from ..report.format import format_pm

    files = ["bound_terms.png", "risk_variance.png", "ntk_drift.png"]
    plot_bound_terms(results, out / files[0])
    plot_risk_variance(results, out / files[1])
    plot_ntk(results, out / files[2])
    cfg, bound = results["config"], results["bound"]
    mix = results["mixture"]
    rep = Report("kdlab theory study — why distillation works, measured")
    rep.paragraph(
        f"Data: a Gaussian mixture with {mix['num_classes']} classes in {mix['dim']} dimensions (separation "
        f"{mix['separation']}, sigma {mix['sigma']}), whose Bayes posterior p*(y|x) is exact; Bayes error "
        f"{mix['bayes_error'] * 100:.2f}%. Every claim is decided by a rule fixed in advance "
        f"(docs/studies/theory.md).")
    rep.heading("Claims")
    rep.claims(results["claims"])

    rep.heading("1. Risk variance (survey section 6; Menon et al., ICML 2021)")
    var = results["risk_variance"]
    rep.paragraph(
        f"Fixed predictor f = {var['predictor']}; teacher = {var['teacher']}. For each size n, "
        f"{var['rows'][0]['replicates']} datasets drawn afresh; on each the one-hot risk (1/n) sum l(y_i, f(x_i)), the "
        "Bayes-distilled risk (1/n) sum_i sum_c p*(c|x_i) l(c, f(x_i)) and the teacher-distilled risk (teacher "
        "probabilities in place of p*), with l the softmax cross-entropy. Variance intervals: chi-square (normal "
        "replicates); ratio intervals: paired percentile bootstrap over replicates.")
    rep.table(["n", "mean R_hat", "V[R_hat]", "V[R*_hat]", "V[R_teacher]", "V[R*]/V[R] [95%]", "V[R_t]/V[R] [95%]"],
              [[r["n"], f"{r['onehot']['mean']:.4f}", f"{r['onehot']['variance']:.3g}",
                f"{r['bayes']['variance']:.3g}", f"{r['teacher']['variance']:.3g}",
                f"{r['bayes_over_onehot']['ratio']:.3f} [{r['bayes_over_onehot']['low']:.3f}, "
                f"{r['bayes_over_onehot']['high']:.3f}]",
                f"{r['teacher_over_onehot']['ratio']:.3f} [{r['teacher_over_onehot']['low']:.3f}, "
                f"{r['teacher_over_onehot']['high']:.3f}]"] for r in var["rows"]])
    rep.image(files[1], "variance of the empirical risks against dataset size")

    rep.heading("2. The distillation bound (survey section 7; Hsu, Ji, Telgarsky, Wang, ICLR 2021)")
    b = cfg["bound"]
    t = bound["teacher"]
    rep.paragraph(
        f"Teacher f = {t['name']} ({t['params']:,} params) trained with CE on n = {b['n_train']} points: train error "
        f"{t['train_error'] * 100:.2f}%, test error {t['test_error'] * 100:.2f}% (on {b['n_test']} fresh points). "
        f"Students distilled from it with {b['loss']} over seeds {b['seeds']}; gamma = {b['gamma']}, delta = "
        f"{b['delta']}. The Rademacher term is the norm-based upper bound for ReLU MLPs (Maurer's vector contraction "
        "+ Golowich, Rakhlin & Shamir, COLT 2018) at the student's class G_j, the powers of two above its layer "
        "norms; p_j is the prior over architectures and norm levels (kdlab.analysis.theory.norm_grid_class).")
    rep.table(["student", "params", "student test err (%)", "training", "8 Phi", "Phi", "L1", "(1/gamma) Rad",
               "complexity (all)", "bound"],
              [[s, f"{v['params']:,}", format_pm(v["student_test_error"]), f"{v['training']['mean']:.3f}",
                f"{v['distillation_error']['mean']:.3f}", f"{v['phi']['mean']:.4f}", f"{v['l1']['mean']:.4f}",
                f"{v['complexity']['mean']:.3g}", f"{v['distillation_complexity']['mean']:.3g}",
                f"{v['total']['mean']:.3g} ± {v['total']['std']:.2g}"] for s, v in bound["summary"].items()]
              + [["teacher itself (g = f)", f"{t['params']:,}", f"{t['test_error'] * 100:.2f}",
                  f"{t['own_bound']['training']:.3f}", "0", "0", "0", f"{t['own_bound']['complexity']:.3g}",
                  f"{t['own_bound']['distillation_complexity']:.3g}", f"{t['own_bound']['total']:.3g}"]])
    rep.image(files[0], "bound terms per student size")

    rep.heading("3. Neural tangent kernel (survey section 8)")
    n = cfg["ntk"]
    rep.paragraph(
        f"NTK-parameterised ReLU MLPs (depth {n['depth']}) of widths {n['widths']}, trained by full-batch gradient "
        f"descent (lr {n['lr']}, {n['steps']} steps) on the squared loss with centred one-hot targets, "
        f"{n['n_train']} training and {n['n_test']} test points, seeds {n['seeds']}. The kernel is the full "
        "empirical NTK (all output pairs); the kernel prediction is the network linearised at initialisation after "
        "the same GD steps (closed form with K_0).")
    rep.table(["width", "drift", "linearisation error", "argmax agreement (%)", "net test acc (%)",
               "kernel test acc (%)"],
              [[w, format_pm(s["drift"], 1, 4), format_pm(s["linearization_error"], 1, 4),
                format_pm(s["argmax_agreement"]), format_pm(s["net_test_accuracy"]),
                format_pm(s["kernel_test_accuracy"])] for w, s in results["ntk"]["summary"].items()])
    rep.image(files[2], "NTK drift and linearisation error against width")
    rep.reproduce(results, reused_where="")
    rep.write(out)
    return files + ["report.md", "report.html"]


def plot_multiview_probes(results: dict[str, Any], path: Path) -> Path:
    """Probe accuracy on single-view inputs (view 1 vs view 2 of each class) for single model, ensemble, student."""
    per_seed = results["per_seed"]
    k = results["config"]["data"]["num_classes"]
    names = ("single", "ensemble", "student")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.8), sharey=True)
    for ax, name in zip(axes, names):
        for c in range(k):
            first = [r[name]["probe_accuracy"]["first"][c] * 100 for r in per_seed]
            second = [r[name]["probe_accuracy"]["second"][c] * 100 for r in per_seed]
            ax.scatter(first, second, label=f"class {c}", s=40, alpha=0.8)
        ax.plot([0, 100], [0, 100], color="#ccc", linewidth=1)
        ax.set_xlim(-5, 105)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("accuracy on view-1-only inputs (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on view-2-only inputs (%)")
    axes[-1].legend(fontsize=8)
    fig.suptitle("Which features each model uses (one point per seed and class; top right = both)")
    return save_figure(fig, path)


def plot_multiview_accuracy(results: dict[str, Any], path: Path) -> Path:
    from .plots import bar_chart

    names = ("single", "ensemble", "student")
    s = results["summary"]
    return bar_chart([n for n in names], [s[n]["test_accuracy"]["mean"] * 100 for n in names],
                     [s[n]["test_accuracy"]["std"] * 100 for n in names], path, ylabel="test accuracy (%)",
                     title="Single model vs ensemble vs distilled student (mean ± std over seeds)")


def write_multiview_report(results: dict[str, Any], out: Path) -> list[str]:
    from ..report.format import format_pm

    files = ["multiview_probes.png", "multiview_accuracy.png"]
    plot_multiview_probes(results, out / files[0])
    plot_multiview_accuracy(results, out / files[1])
    cfg = results["config"]
    d, net = cfg["data"], cfg["net"]
    rep = Report("kdlab multi-view study — ensemble and distillation on multi-view data")
    rep.paragraph(
        f"Data (survey section 9; Allen-Zhu & Li, ICLR 2023): {d['num_classes']} classes with two features each; 80% "
        f"of samples show both, 10% only the first, 10% only the second, the other classes' features at "
        f"{d['other_strength']}; {d['num_patches']} patches of dimension {d['patch_dim']}, each feature in "
        f"{d['patches_per_feature']} patch(es), Gaussian noise of norm {d['noise_norm']} per patch; "
        f"{d['n_train']} training samples. Network: F_c(X) = sum_r sum_p ReLU~(<w_c,r, x_p>), {net['neurons']} "
        f"neurons per class, smoothed ReLU with power {net['power']} up to rho = {net['rho']}, init std "
        f"{net['init_std']}. {cfg['members']} members per seed (member 0 is the single model); the student is "
        f"distilled from the mean of their logits with {cfg['loss']}. Seeds {cfg['seeds']}. A view is counted as "
        f"learned when its probe accuracy reaches {cfg['learned_threshold']:.0%}.")
    rep.heading("Claims")
    rep.claims(results["claims"])
    rep.heading("Accuracy (%), mean ± std over seeds")
    rep.table(["model", "train", "test"], [[n, format_pm(s["train_accuracy"]), format_pm(s["test_accuracy"])]
                                           for n, s in results["summary"].items()])
    rep.image(files[1], "test accuracy")
    rep.heading("Per-feature probes")
    rows = []
    for r in results["per_seed"]:
        for name in ("single", "ensemble", "student"):
            p = r[name]["probe_accuracy"]
            rows.append([r["seed"], name] + [f"{p[v][c] * 100:.0f}" for c in range(d["num_classes"])
                                             for v in ("first", "second")])
    rep.table(["seed", "model"] + [f"class {c} view {v}" for c in range(d["num_classes"]) for v in (1, 2)], rows)
    rep.image(files[0], "probe accuracy on single-view inputs")
    rep.paragraph("Feature correlations max_r <w_c,r, v_c,l> (class c, view l) per seed: "
                  + "; ".join(f"seed {r['seed']}: single {r['feature_correlations']['single']}, student "
                              f"{r['feature_correlations']['student']}" for r in results["per_seed"]))
    rep.reproduce(results, reused_where="")
    rep.write(out)
    return files + ["report.md", "report.html"]
