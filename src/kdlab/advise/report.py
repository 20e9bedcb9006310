"""The advise report (report.md and report.html), rendered from results.json alone."""

from __future__ import annotations

from typing import Any

from ..report import Report
from ..report.format import format_interval, format_pm, format_values


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _flag(value: bool | None) -> str:
    return {True: "flagged", False: "no", None: "undecided"}[value]


def _values(values: dict[str, Any]) -> str:
    return format_values(values, empty="defaults", float_format="g")


def _recommendation(rep: Report, results: dict[str, Any]) -> None:
    rec = results["recommendation"]
    rep.heading("Recommendation")
    if rec["pick"] is None:
        rep.paragraph(f"No distillation candidate was trained: {rec['reason']}. Train the student with CE alone "
                      f"(`{results['recommended_yaml']}`), or rerun with a larger --budget.")
        return
    pick = rec["pick"]
    val = rec["val"]
    where = (f"rung {rec['rung']} ({rec['images']} training images, {rec['epochs']} epochs, seeds {rec['seeds']})")
    if rec["recommended"] == "ce":
        rep.paragraph(f"Train the student with CE alone. The pilot's best candidate, {pick['key']}, reached "
                      f"{format_pm(val['pick'])}% mean validation accuracy at {where}, not above the CE-only "
                      f"student's {format_pm(val['ce'])}%.")
    else:
        rep.paragraph(f"Distil from teacher **{pick['teacher']}** with **{pick['method']}** "
                      f"({_values(pick['hyperparameters'])}). At {where} it reached {format_pm(val['pick'])}% mean "
                      f"validation accuracy against the CE-only student's {format_pm(val['ce'])}%; it was chosen "
                      "on validation accuracy alone.")
    gain = rec["test_gain"]
    rep.paragraph(f"Expected gain over CE-only: {format_interval(gain)} points of test accuracy (the pick minus the "
                  f"CE student, paired over the {gain['n']} pilot seeds, 95% t interval); rule declared before the "
                  f"pilot: distillation helps when the gain is > 0 -> **{rec['verdict']}**.")
    rep.paragraph(f"Ready-to-run config: `{results['recommended_yaml']}` (the student's full recipe with this "
                  "teacher and loss).")


def _teachers(rep: Report, results: dict[str, Any]) -> None:
    profiles = results["profiles"]
    rep.heading("Teachers")
    temps = sorted(next(iter(profiles["teachers"].values()))["derived_std"], key=float)
    rows = []
    for label, p in profiles["teachers"].items():
        agreement = p.get("reference_agreement")
        rows.append([label, p["role"], f"{p['params']:,}", _pct(p["train_accuracy"]), _pct(p["val_accuracy"]),
                     f"{p['ece']:.3f}",
                     " / ".join(f"{p['derived_average'][t]:.3f}" for t in temps),
                     " / ".join(f"{p['derived_std'][t]:.4f}" for t in temps),
                     "—" if agreement is None else
                     f"{agreement['spearman']:.2f} [{agreement['low']:.2f}, {agreement['high']:.2f}]",
                     _flag(p.get("nasty"))])
    rep.table(["teacher", "role", "params", "acc on student's train (%)", "val acc (%)", "ECE",
               f"derived average (T = {', '.join(temps)})", "derived std", "affinity rho vs CE student",
               "nasty?"], rows)
    rep.paragraph(f"Profiles are measured on the student's training inputs. Affinity rho is Spearman's correlation "
                  f"of the teacher's and the CE-only student's class-affinity matrices (off-diagonal entries), with "
                  f"a 95% bootstrap interval over images; a teacher is flagged as looking deliberately undistillable "
                  f"when the whole interval lies below {profiles['affinity_floor']} (the nasty teacher of "
                  "reports/nasty agrees with a normal model at -0.06)."
                  + (f" Flag not applicable: {profiles['flag_not_applicable']}." if profiles["flag_not_applicable"]
                     else ""))
    if profiles["consistency"]:
        rep.paragraph("Affinity consistency between teachers (Spearman rho): " + ", ".join(
            f"{pair.replace('|', ' vs ')} {rho:.2f}" if rho is not None else f"{pair.replace('|', ' vs ')} —"
            for pair, rho in profiles["consistency"].items()) + ".")


def _student(rep: Report, results: dict[str, Any]) -> None:
    curve = results["learning_curve"]
    rep.heading("Student capacity (CE alone)")
    rep.table(["rung", "training images", "epochs", "val acc (%)"],
              [[p["rung"], p["images"], p["epochs"], format_pm(p["val_accuracy"])] for p in curve["points"]])
    fit = curve["fit"]
    if fit is not None:
        rep.paragraph(f"Fit of the CE-only student at the largest size: **{fit['verdict']}** ({fit['reason']}; "
                      f"final train accuracy {_pct(fit['final_train_acc'])}%, validation "
                      f"{_pct(fit['final_val_acc'])}%).")


def _pilot(rep: Report, results: dict[str, Any]) -> None:
    rep.heading("Pilot: successive halving on validation accuracy")
    rows = []
    for h in results["halving"]:
        shape = results["rungs"][h["rung"]]
        trained = len(h["candidates"])
        if h.get("shrunk_from"):
            trained = f"{trained} (of {h['shrunk_from']}: budget)"
        rows.append([h["rung"], shape["epochs"], shape["images"], len(shape["seeds"]), trained,
                     len(h["survivors"]) or "—", f"{h['estimate_seconds']:.0f}" if h["estimate_seconds"] else "—",
                     f"{h['seconds']:.0f}"])
    rep.table(["rung", "epochs", "images", "seeds", "candidates", "survivors", "estimated s", "took s"], rows)
    rep.paragraph(f"{results['points']} hyperparameter point(s) per (teacher, method) at the first rung, drawn from "
                  "each method's declared search space (`kdlab list spaces`). "
                  + (f"Stopped early: {results['stop_reason']}." if results["stop_reason"] else "Every rung ran."))
    rep.table(["rank", "teacher", "method", "last rung", "mean val acc (%)", "best candidate"],
              [[i + 1, e["teacher"], e["method"], e["rung"], _pct(e["val"]), e["candidate"]]
               for i, e in enumerate(results["ranking"])])


def _per_class(rep: Report, results: dict[str, Any]) -> None:
    transfer = results["per_class"]
    if transfer is None:
        return
    rep.heading("Per-class transfer of the pick (validation)")
    gain = transfer["gain"]
    rep.table(["class", "gain (points)", "interval"],
              [[name, f"{100 * gain['mean'][c]:+.2f}", f"[{100 * gain['low'][c]:+.2f}, {100 * gain['high'][c]:+.2f}]"]
               for c, name in enumerate(transfer["class_names"])])
    negative = ", ".join(n["name"] for n in transfer["negative"]) or "none"
    rep.paragraph(f"Classes with negative transfer (whole {transfer['interval']} interval below 0): {negative}. "
                  f"Classes with a negative mean gain: {', '.join(transfer['below_zero']) or 'none'}.")


def advise_report(results: dict[str, Any]) -> Report:
    """The report of one ``kdlab advise`` run: the recommendation first, then the measured quantities behind it."""
    rep = Report(f"kdlab advise — {results['dataset']}")
    _recommendation(rep, results)
    _teachers(rep, results)
    _student(rep, results)
    _pilot(rep, results)
    _per_class(rep, results)
    rep.heading("Budget")
    rep.paragraph(f"Budget {results['budget_seconds'] / 60:.1f} min; the command took "
                  f"{results['elapsed_seconds']:.0f} s "
                  f"(pilot {results['pilot_seconds']:.0f} s); {results['runs_trained']} runs trained, "
                  f"{results['runs_reused']} reused from the run store.")
    rep.code(results["command_line"])
    return rep
