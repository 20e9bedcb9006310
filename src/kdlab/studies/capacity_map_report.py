"""The capacity map's report, built from results.json alone (so ``kdlab report DIR`` rebuilds it byte for byte).

Sections (docs/studies/capacity-map.md, "Plots" and "What the report must contain"): where the mismatch appears, in
the words of the declared rule; the claims; the gap heat maps over (teacher size x student size), one panel per
(dataset, family, teacher length, labelled-set size), entries whose 95% interval contains 0 hatched, the best teacher
outlined and the row's verdict in the margin; every cell's numbers; derived std against teacher capacity (and on the
synthetic task the distance to the Bayes posterior); each teacher's description; the remedies where the gap
appears; the budget; the pre-registration. A report of any grid other than the declared full map says so in its
title and first paragraph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analysis.verdict import verdict_word
from ..report import Report
from ..report.format import format_params

__all__ = ["cell_rows", "gap_heatmap_panels", "remedy_lines", "report", "where_mismatch_appears"]

# derived std is read at the temperature KD is most often run at (the pre-registration's plot 2)
PROFILE_TAU = 4.0


def _pts(value: float | None, signed: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"


def _interval(entry: dict[str, Any]) -> str:
    if entry.get("low") is None:
        return f"{_pts(entry.get('gap'))} (no interval: {entry.get('reason')})"
    return f"{_pts(entry['gap'])} [{_pts(entry['low'])}, {_pts(entry['high'])}]"


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _at_tau(by_tau: dict[str, Any], tau: float = PROFILE_TAU) -> Any:
    """The entry of a {str(temperature): value} mapping at ``tau`` (keys are written "4.0" or "4")."""
    return next(v for k, v in by_tau.items() if float(k) == tau)


def _verdict_of(cell: dict[str, Any]) -> str:
    if cell["gap"]["reason"] is not None:
        return "null"
    return cell["verdict"]["verdict"]


def where_mismatch_appears(results: dict[str, Any]) -> list[str]:
    """The map's answer in the words of the declared rule: the cells called present, absent, undecided and null."""
    groups: dict[str, list[str]] = {"present": [], "absent": [], "undecided": [], "null": []}
    for cell in results["cells"]:
        groups[_verdict_of(cell)].append(cell["key"])
    family = results["family"]
    threshold = _pts(results["grid"]["threshold"], signed=False)
    out = [f"{family['num_tested']} cells tested, {family['num_null']} without the seeds an interval needs; "
           f"Benjamini-Hochberg over the tested cells at {family['alpha'] / 2:g} per direction, delta = "
           f"{threshold} points."]
    out.append(f"Mismatch present (the BH-adjusted interval of G lies above delta) in {len(groups['present'])} "
               f"cell(s){': ' + ', '.join(groups['present']) if groups['present'] else ''}.")
    out.append(f"Mismatch absent (the BH-adjusted interval lies at or below delta) in {len(groups['absent'])} "
               f"cell(s){': ' + ', '.join(groups['absent']) if groups['absent'] else ''}.")
    out.append(f"Undecided in {len(groups['undecided'])} cell(s)"
               f"{': ' + ', '.join(groups['undecided']) if groups['undecided'] else ''}.")
    if groups["null"]:
        out.append(f"Null (precondition absent) in {len(groups['null'])} cell(s): {', '.join(groups['null'])}.")
    return out


def remedy_lines(results: dict[str, Any]) -> list[str]:
    """Which remedies ran where, and in each present cell which close the gap and which beat KD from L."""
    chosen = results["remedy_cells"]
    if not chosen["run"]:
        return ["No cell has mismatch present, so no remedy ran (the declared rule sends remedies only to present "
                "cells)." if chosen["rule"] == "present" else "No tested cell: no remedy ran."]
    out = []
    if chosen["rule"] == "all":
        out.append("Remedies ran in every tested cell (remedy_cells=all, a smoke test of the remedies): the "
                   "pre-registered rule runs them only where mismatch is present.")
    for cell in chosen["run"]:
        closing = [remedy for remedy in results["remedies"][cell]
                   if results["remedy_verdicts"].get("closes", {}).get(f"{cell}|{remedy}", {}).get("holds") is True]
        gaining = [remedy for remedy in results["remedies"][cell]
                   if results["remedy_verdicts"].get("gain", {}).get(f"{cell}|{remedy}", {}).get("holds") is True]
        out.append(f"{cell}: closes the gap (BH-adjusted interval above -delta): {', '.join(closing) or 'none'}; "
                   f"beats KD from the largest teacher (interval above 0): {', '.join(gaining) or 'none'}.")
    if chosen["skipped_budget"]:
        out.append(f"Remedies not run (budget cap): {', '.join(chosen['skipped_budget'])}.")
    return out


def _panel_key(cell: dict[str, Any]) -> tuple:
    return cell["dataset"], cell["family"], cell["teacher_length"], cell["label_size"]


def gap_heatmap_panels(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One heat-map panel per (dataset, family, teacher length, labelled-set size): rows = student sizes, columns =
    teacher sizes (ascending parameters); entry = best-KD student accuracy from that teacher minus from the largest
    teacher (points, test); hatched when its 95% interval contains 0 (or has none); the best teacher B outlined; the
    row's verdict, G and its marginal 95% interval in the right margin."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for cell in results["cells"]:
        groups.setdefault(_panel_key(cell), []).append(cell)
    entries = [row["minus_largest"]["gap"] * 100 for cells in groups.values() for c in cells
               for row in c["gap"]["per_teacher"].values()]
    limit = max([1.0, *(abs(e) for e in entries)])
    panels = []
    for (dataset, family, length, labels), cells in groups.items():
        teachers = list(cells[0]["gap"]["per_teacher"])
        matrix, hatch, outline, notes = [], [], [], []
        for i, cell in enumerate(cells):
            per = cell["gap"]["per_teacher"]
            row, marks = [], []
            for t in teachers:
                diff = per[t]["minus_largest"]
                row.append(diff["gap"] * 100)
                marks.append(diff["low"] is None or diff["low"] <= 0.0 <= diff["high"])
            matrix.append(row)
            hatch.append(marks)
            outline.append([i, teachers.index(cell["gap"]["best_teacher"])])
            notes.append(f"{_verdict_of(cell)}: G {_interval(cell['gap'])}")
        params = [cells[0]["gap"]["per_teacher"][t]["params"] for t in teachers]
        panels.append({
            "type": "heatmap", "matrix": matrix, "hatch": hatch, "outline": outline, "row_notes": notes,
            "xlabels": [f"{t}\n{format_params(p)}" for t, p in zip(teachers, params)],
            "ylabels": [c["student"] for c in cells], "cmap": "RdBu_r", "vmin": -limit, "vmax": limit,
            "annotate": True, "format": "{:+.1f}", "annotate_size": 8, "xtick_rotation": 0, "aspect": "auto",
            "colorbar": "minus largest teacher (points)", "colorbar_location": "bottom",
            "title": f"{dataset} / {family} / {length} teachers / {labels} labels",
            "ylabel": "student"})
    return panels


def _heatmap_figure(results: dict[str, Any]) -> dict[str, Any]:
    panels = gap_heatmap_panels(results)
    students = max(len(p["matrix"]) for p in panels)
    return {"panels": panels, "layout": [len(panels), 1], "size": [11.0, (2.2 + 0.55 * students) * len(panels)],
            "title": "Capacity-mismatch gap: best-KD student accuracy from each teacher minus from the largest\n"
                     "(hatched: 95% interval contains 0; outlined: best teacher on validation)"}


def _seed_stats(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _teacher_groups(results: dict[str, Any]) -> dict[tuple, list[dict[str, Any]]]:
    """Teacher records grouped by (dataset, family, length, teacher), in the order they were profiled."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in results["teachers"]:
        groups.setdefault((record["dataset"], record["family"], record["length"], record["teacher"]), []).append(
            record)
    return groups


def _first_labels(record: dict[str, Any]) -> str:
    return next(iter(record["labelled"]))


def _capacity_figure(results: dict[str, Any]) -> dict[str, Any]:
    """Derived std at tau 4 on the students' (first) labelled inputs against teacher parameters, mean +- std over
    teacher seeds, one line per (family, length), a panel per dataset; on the synthetic task p*'s derived std as the
    reference line and a panel of KL(p* || teacher) on the same inputs."""
    groups = _teacher_groups(results)
    lines: dict[str, dict[tuple, list]] = {}
    for (dataset, family, length, _), records in groups.items():
        lines.setdefault(dataset, {}).setdefault((family, length), []).append(records)
    panels = []
    for dataset, by_line in lines.items():
        series, reference, kl_series = [], [], []
        for i, ((family, length), per_teacher) in enumerate(by_line.items()):
            x, y, err, kl, kl_err = [], [], [], [], []
            for records in per_teacher:
                n = _first_labels(records[0])
                x.append(records[0]["params"])
                mean, std = _seed_stats([_at_tau(r["labelled"][n]["derived_std"]) for r in records])
                y.append(mean)
                err.append(std)
                if "bayes" in records[0]["labelled"][n]:
                    mean, std = _seed_stats([r["labelled"][n]["bayes"]["distance"]["kl"] for r in records])
                    kl.append(mean)
                    kl_err.append(std)
                    reference = [_at_tau(records[0]["labelled"][n]["bayes"]["derived_std"])["bayes"]]
            label = f"{family}, {length} ({_first_labels(per_teacher[0][0])} labelled inputs)"
            series.append({"label": label, "x": x, "y": y, "err": err, "style": "o-"})
            if kl:
                kl_series.append({"label": label, "x": x, "y": kl, "err": kl_err, "style": "o-"})
        panel = {"type": "lines", "series": series, "xscale": "log", "xlabel": "teacher parameters",
                 "ylabel": f"derived std at tau {PROFILE_TAU:g}", "title": dataset, "legend": "best"}
        if reference:
            panel["hlines"] = [{"y": reference[0], "label": "Bayes posterior p*", "color": "k", "style": "--"}]
        panels.append(panel)
        if kl_series:
            panels.append({"type": "lines", "series": kl_series, "xscale": "log", "xlabel": "teacher parameters",
                           "ylabel": "KL(p* || teacher)", "title": f"{dataset}: distance to the Bayes posterior",
                           "legend": "best"})
    return {"panels": panels, "layout": [1, len(panels)], "size": [5.0 * len(panels), 4.0],
            "title": "Teacher dark knowledge against capacity (mean ± std over teacher seeds)"}


def _teacher_rows(results: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    dark, bayes = [], []
    for (dataset, family, length, teacher), records in _teacher_groups(results).items():
        n = _first_labels(records[0])

        def stat(read) -> str:
            mean, std = _seed_stats([read(r) for r in records])
            return f"{mean:.4g} ± {std:.2g}"

        def acc(key: str) -> str:
            mean, std = _seed_stats([r[key] for r in records])
            return f"{mean * 100:.2f} ± {std * 100:.2f}"

        head = [f"{dataset} / {family} / {length}", teacher, format_params(records[0]["params"])]
        dark.append(head + [acc("test_accuracy"), acc("train_accuracy"),
                            stat(lambda r: _at_tau(r["labelled"][n]["derived_std"])),
                            stat(lambda r: _at_tau(r["labelled"][n]["nongt_entropy"])),
                            stat(lambda r: _at_tau(r["labelled"][n]["target_prob"])),
                            stat(lambda r: r["ece"]),
                            stat(lambda r: r["labelled"][n]["affinity_vs_largest"]["spearman"])])
        if "bayes" in records[0]["labelled"][n]:
            def b(r):
                return r["labelled"][n]["bayes"]
            bayes.append(head + [stat(lambda r: b(r)["distance"]["kl"]), stat(lambda r: b(r)["distance"]["tv"]),
                                 stat(lambda r: b(r)["distance"]["nongt_kl"]),
                                 stat(lambda r: b(r)["distance"]["bayes_agreement"]),
                                 stat(lambda r: _at_tau(b(r)["derived_std"])["ratio"]),
                                 stat(lambda r: b(r)["affinity"]["spearman"]),
                                 stat(lambda r: b(r)["in_superclass_share"]["model"]),
                                 f"{b(records[0])['in_superclass_share']['bayes']:.3f}"])
    return dark, bayes


def _adjusted(cell: dict[str, Any]) -> str:
    adjusted = cell["verdict"]["adjusted_interval"]
    return f"[{_pts(adjusted['low'])}, {_pts(adjusted['high'])}]"


def cell_rows(results: dict[str, Any]) -> list[list[str]]:
    """Per cell: key, best teacher B, largest L, G with its marginal 95% interval, the BH-adjusted interval the
    verdict reads, and the verdict (the README's summary table)."""
    return [[cell["key"], cell["gap"]["best_teacher"], cell["gap"]["largest_teacher"], _interval(cell["gap"]),
             _adjusted(cell), _verdict_of(cell)] for cell in results["cells"]]


def _cell_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for cell in results["cells"]:
        gap, verdict = cell["gap"], cell["verdict"]
        p, bh, holm = verdict["p_values"], verdict["bh_p"] or {}, verdict["holm_p"] or {}
        rows.append([cell["key"], gap["best_teacher"], gap["largest_teacher"], _interval(gap),
                     "—" if gap["dof"] is None else f"{gap['dof']:.1f}", _adjusted(cell),
                     f"{_p(p['present'])} / {_p(p['absent'])}",
                     f"{_p(bh.get('present'))} / {_p(bh.get('absent'))}",
                     f"{_p(holm.get('present'))} / {_p(holm.get('absent'))}",
                     _verdict_of(cell), f"{cell['ce']['mean'] * 100:.2f} ± {cell['ce']['std'] * 100:.2f}"])
    return rows


def _per_teacher_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for cell in results["cells"]:
        for teacher, row in cell["gap"]["per_teacher"].items():
            marks = ("B" if teacher == cell["gap"]["best_teacher"] else "") + (
                "L" if teacher == cell["gap"]["largest_teacher"] else "")
            rows.append([cell["key"], f"{teacher} {marks}".strip(), format_params(row["params"]),
                         f"{row['temperature']:g}", _pts(row["val_accuracy"], signed=False),
                         _pts(row["test_accuracy"], signed=False), _interval(row["minus_largest"])])
    return rows


def _remedy_section(rep: Report, results: dict[str, Any]) -> None:
    rep.heading("Remedies where the gap appears")
    if not results["remedies"]:
        rep.paragraph(remedy_lines(results)[0])
        return
    rep.paragraph("Each remedy distils the cell's student from the largest teacher L; its configuration (of 3) is "
                  "chosen on validation; intervals are marginal 95% variance-components intervals, verdicts are read "
                  "on the BH-adjusted intervals over the (cell, remedy) pairs of each statistic (gain > 0, minus "
                  "best KD from B > -delta, ATS minus its symmetric control > 0).")
    delta = results["grid"]["threshold"]
    panels = []
    for cell, remedies in results["remedies"].items():
        rows = []
        forest = []
        for name, stats in remedies.items():
            verdicts = {s: results["remedy_verdicts"][s].get(f"{cell}|{name}") for s in ("gain", "closes",
                                                                                       "asymmetry")}

            def decided(statistic: str) -> str:
                if statistic not in stats:
                    return "—"
                return f"{_interval(stats[statistic])} {verdict_word(verdicts[statistic]['holds'])}"

            configs = ", ".join(f"{v * 100:.2f}" for v in stats["val_accuracy"])
            rows.append([name, str(stats["values"]), configs, _pts(stats["test_accuracy"], signed=False),
                         decided("gain"), decided("closes"), decided("asymmetry")])
            for statistic, label in (("gain", "gain over KD from L"), ("closes", "minus best KD from B")):
                entry = stats[statistic]
                forest.append({"label": f"{name}: {label} ({verdict_word(verdicts[statistic]['holds'])})",
                               "mean": entry["gap"] * 100,
                               "low": math.nan if entry["low"] is None else entry["low"] * 100,
                               "high": math.nan if entry["high"] is None else entry["high"] * 100,
                               "color": "#4c78a8" if statistic == "gain" else "#f58518"})
        rep.heading(cell, 3)
        rep.table(["remedy", "chosen configuration (validation)", "validation accuracy per configuration (%)",
                   "test accuracy (%)", "gain over KD from L [95%], verdict", "minus best KD from B [95%], verdict",
                   "ATS minus symmetric [95%], verdict"], rows)
        panels.append({"type": "intervals", "rows": forest, "title": cell, "xlabel": "points (test accuracy)",
                       "vlines": [{"x": -delta * 100, "label": "-delta", "style": "--", "color": "#b3261e"}],
                       "label_size": 8, "legend": "none"})
    rep.figure("remedy_gains.png", {"panels": panels, "layout": [len(panels), 1],
                                    "size": [9.0, 0.35 * max(len(p["rows"]) for p in panels) * len(panels) + 1.5],
                                    "title": "Remedies from the largest teacher (marginal 95% intervals)"},
               "each remedy's gain over KD from the largest teacher and its distance to the best teacher's KD")


def _budget_lines(results: dict[str, Any]) -> list[str]:
    spent = results["budget"]["core_seconds"]
    roles = ", ".join(f"{role} {seconds:,.0f} s" for role, seconds in spent["by_role"].items())
    counts = results["grid"]["run_counts"]
    return [f"Wall time {results['seconds']:,.0f} s ({results['runs_trained']} runs trained, "
            f"{results['runs_reused']} reused from the run store; {results['executor']['name']} executor, "
            f"{results['executor']['workers']} worker(s)).",
            f"Training core-seconds from the runs' own summaries: {spent['total']:,.0f} over {spent['runs']} runs "
            f"({roles}).",
            f"Planned before remedies: {counts['cells']} cells, {counts['teachers']} teachers, "
            f"{counts['kd_students']} KD and {counts['ce_students']} CE students.",
            "Load average at the end (1, 5, 15 min): "
            + ", ".join(f"{v:.2f}" for v in results["budget"]["load_average_at_end"]) + "."]


def report(results: dict[str, Any]) -> Report:
    """The capacity map's report (module docstring)."""
    grid = results["grid"]
    is_map = grid["name"] == "full"
    title = "kdlab capacity map" if is_map else f"kdlab capacity map — {grid['name'].upper()} PRESET, not the map"
    rep = Report(title)
    if not is_map:
        rep.paragraph(f"This is the '{grid['name']}' preset: a small corner of the declared design that checks the "
                      "pipeline end to end (tiny synthetic task, few epochs, 2 seeds). Its numbers say nothing "
                      "about where capacity mismatch lives; the map is the 'full' grid "
                      "(docs/studies/capacity-map.md).")
    pre = results.get("preregistration")
    rep.paragraph("Design, statistic, threshold and decision rules were declared before any map run in "
                  + (f"{pre['path']}, kept unchanged (SHA-256 of the pre-registered text, before its dated "
                     f"addenda: {pre['sha256']}; the whole document as it was when this ran is in results.json)."
                     if pre else "docs/studies/capacity-map.md (not found when this ran)."))
    rep.heading("Where capacity mismatch appears")
    for line in where_mismatch_appears(results):
        rep.paragraph(line)
    for line in remedy_lines(results):
        rep.paragraph(line)
    rep.claims_section(results)
    rep.heading("Gap heat maps")
    rep.figure("gap_heatmaps.png", _heatmap_figure(results),
               "gap over (teacher size x student size): hatched entries' 95% interval contains 0")
    rep.heading("Cells")
    rep.paragraph("G = best teacher B minus largest teacher L (points of student test accuracy, mean over teacher and "
                  "student seeds) with its marginal 95% variance-components interval and Satterthwaite degrees of "
                  "freedom nu; the BH-adjusted interval is the one the verdict reads; p-values of the one-sided "
                  "tests against delta (present / absent), BH-corrected (the decision) and Holm-corrected "
                  "(sensitivity only); CE = the student trained on its labels alone.")
    rep.table(["cell", "B", "L", "G [95%]", "nu", "BH-adjusted interval", "p present / absent", "BH", "Holm",
               "verdict", "CE student (%)"], _cell_rows(results))
    rep.heading("Every teacher's best-KD student", 3)
    rep.table(["cell", "teacher (B best, L largest)", "params", "tau (validation)", "validation (%)", "test (%)",
               "minus L on test [95%]"], _per_teacher_rows(results))
    rep.heading("Teachers: dark knowledge against capacity")
    rep.figure("derived_std_vs_capacity.png", _capacity_figure(results),
               f"derived std at tau {PROFILE_TAU:g} against teacher parameters")
    dark, bayes = _teacher_rows(results)
    rep.paragraph(f"Mean ± std over teacher seeds; dark-knowledge statistics at tau {PROFILE_TAU:g} on the students' "
                  "(first) labelled inputs; affinity rho = Spearman correlation of the class-affinity matrix with the "
                  "largest teacher's of the same seed. Description only: no verdict reads these numbers.")
    rep.table(["dataset / family / length", "teacher", "params", "test acc (%)", "train acc (%)", "derived std",
               "non-GT entropy", "target prob", "ECE (test)", "affinity rho vs largest"], dark)
    if bayes:
        rep.paragraph("On the synthetic task, the distance of each teacher to the exact Bayes posterior p* on the same "
                      "inputs (kdlab.analysis.bayes_distance): KL(p* || q), total variation, KL of the renormalised "
                      "non-GT parts, agreement with the Bayes classifier, derived std as a ratio of p*'s, affinity "
                      "Spearman against p*'s, and the share of wrong-class mass inside the true class's super-class.")
        rep.table(["dataset / family / length", "teacher", "params", "KL(p*||q)", "TV", "non-GT KL",
                   "Bayes agreement", "derived std / p*'s", "affinity rho vs p*", "in-super share",
                   "p*'s in-super share"], bayes)
    _remedy_section(rep, results)
    rep.heading("Budget")
    for line in _budget_lines(results):
        rep.paragraph(line)
    rep.reproduce(results)
    return rep
