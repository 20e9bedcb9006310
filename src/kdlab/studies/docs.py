"""Documentation generated from the studies' declarations, so a rule is written once.

- :func:`rules_markdown`: a study's claims (statistic, rule, precondition, selection, source) for its default
  config, as the "Decision rules" section of ``docs/studies/<doc>.md``;
- :func:`claims_table`: the README's table of verdicts, printed verbatim from the committed ``reports/*/results.json``;
- :func:`method_ranking`: the README's ranking of the capacity study's methods at their tuned configurations;
- :func:`capacity_map_summary`: the README's summary of the committed capacity map, in the words of its declared rule.

``python -m kdlab.studies.docs [ROOT]`` rewrites the generated blocks (between ``<!-- generated: KEY -->`` and
``<!-- end generated -->``) in the repository at ROOT (default: the current directory); a test checks they are
current.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from ..analysis.verdict import verdict_word
from ..report.format import format_interval, format_pm, markdown_table
from .base import STUDIES
from .capacity_map_report import cell_rows, remedy_lines, where_mismatch_appears
from .capacity_tuning import values_text

# study -> the document holding its rules (the audit is described with the nasty teacher)
DOCS = {"baseline": "baseline.md", "capacity": "capacity.md", "undistillable": "undistillable.md",
        "nasty": "nasty.md", "audit": "nasty.md", "kinds": "kinds.md", "fit": "fit.md", "compress": "compress.md",
        "theory": "theory.md", "multiview": "multiview.md"}
# the committed reports, in the README's order (a report directory relative to reports/)
REPORTS = ("capacity", "capacity/undistillable", "kinds", "nasty", "fit", "compress", "theory", "multiview")
END = "<!-- end generated -->"


def default_config(name: str) -> Any:
    """A study's default config (defaults only; the audit's model path is a placeholder: claims do not read it)."""
    study = STUDIES.get(name)
    overrides = ['model="MODEL"'] if name == "audit" else []
    return study.load_config(None, None, overrides)


def rules_markdown(name: str) -> str:
    """The decision rules of study ``name`` (its default configuration), generated from its claim declarations."""
    claims = STUDIES.get(name).claims(default_config(name))
    lines = [f"Generated from the claims declared in `kdlab.studies.{name}` (default configuration); each verdict is "
             "decided by `kdlab.analysis.verdict` from the statistic's interval: holds when the whole interval "
             "satisfies the rule, does not hold when it lies on the other side of the threshold, undecided otherwise "
             "(and without an interval, e.g. one seed); not applicable when the precondition is absent.", ""]
    for i, c in enumerate(claims, start=1):
        lines.append(f"{i}. *{c.text}* (`{c.id}`)")
        lines.append(f"   - statistic: {c.statistic}")
        lines.append(f"   - rule: {c.rule_text()}")
        if c.precondition:
            lines.append(f"   - not applicable unless: {c.precondition}")
        if c.selection:
            lines.append(f"   - chosen before the statistic is read: {c.selection}")
        if c.source:
            lines.append(f"   - source: {c.source}")
    return "\n".join(lines)


def claims_table(reports: Path) -> str:
    """The README's claims table: study, claim, verdict and evidence exactly as each committed results.json says."""
    rows = []
    for name in REPORTS:
        path = reports / name / "results.json"
        if not path.is_file():
            continue
        results = json.loads(path.read_text())
        link = f"[{results['study']}](reports/{name}/report.md)"
        for c in results["claims"]:
            rows.append([link, c["claim"], verdict_word(c["holds"], c.get("not_applicable")), c["evidence"]])
    return "\n".join(markdown_table(["study", "claim", "verdict", "evidence (from results.json)"], rows))


def method_ranking(reports: Path) -> str:
    """The README's method ranking from the committed capacity report: every method from the largest teacher at its
    tuned configuration, ordered by validation accuracy (the split choices read), with its test accuracy, its paired
    difference against the CE student and its tuning's validation-to-test gap."""
    results = json.loads((reports / "capacity" / "results.json").read_text())
    largest = max(results["teachers"], key=lambda t: t["params"])
    row = results["table"][largest["name"]]
    gaps = {r["method"]: r["val_to_test_gap"] for r in results.get("tuning", {}).get("methods", [])
            if r["teacher"] == largest["name"]}
    ce = results["ce_student"]
    lines = [f"From the largest teacher ({largest['label']}, {largest['name']}), mean ± std over "
             f"{ce['n']} evaluation seeds; CE only: {format_pm(ce)}. Ordered by validation accuracy.", ""]
    ranked = sorted(row, key=lambda m: row[m]["val_accuracy"]["mean"], reverse=True)
    rows = []
    for rank, m in enumerate(ranked, start=1):
        cell = row[m]
        gap = f"{gaps[m] * 100:+.2f}" if gaps.get(m) is not None else "—"
        rows.append([rank, m, values_text(cell.get("values") or {}), format_pm(cell["val_accuracy"]),
                     format_pm(cell["test_accuracy"]), format_interval(cell["minus_ce"]), gap])
    lines += markdown_table(["rank", "method", "tuned values", "val acc (%)", "test acc (%)",
                             "test - CE (points, 95% CI)", "val - test gap of the tuning (points)"], rows)
    return "\n".join(lines)


def capacity_map_summary(reports: Path) -> str:
    """The README's summary of the committed capacity map (``reports/capacity-map/results.json``): where the mismatch
    appears and which remedy closes it, in the words of the declared rule (the report's own sentences), and every
    cell's gap with the interval its verdict reads. Says so when the map has not been committed."""
    path = reports / "capacity-map" / "results.json"
    if not path.is_file():
        return "The full map has not been committed yet (`reports/capacity-map/` is empty)."
    results = json.loads(path.read_text())
    lines = [line for paragraph in (*where_mismatch_appears(results), *remedy_lines(results))
             for line in (paragraph, "")]
    lines += markdown_table(["cell", "best teacher B (validation)", "largest L", "G (points) [95%]",
                             "BH-adjusted interval", "verdict"], cell_rows(results))
    return "\n".join(lines)


def replace_block(text: str, key: str, content: str) -> str:
    """``text`` with the block between ``<!-- generated: key -->`` and the next end marker set to ``content``."""
    start = f"<!-- generated: {key} -->"
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise KeyError(f"no '{start}' ... '{END}' block")
    return pattern.sub(lambda _: f"{start}\n{content}\n{END}", text)


def generated_files(root: Path) -> dict[Path, str]:
    """Every file with a generated block, and its content once the blocks are current."""
    out: dict[Path, str] = {}
    for name, doc in DOCS.items():
        path = root / "docs" / "studies" / doc
        text = out.get(path, path.read_text())
        out[path] = replace_block(text, f"rules {name}", rules_markdown(name))
    readme = root / "README.md"
    text = replace_block(readme.read_text(), "claims table", claims_table(root / "reports"))
    text = replace_block(text, "method ranking", method_ranking(root / "reports"))
    out[readme] = replace_block(text, "capacity map", capacity_map_summary(root / "reports"))
    return out


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated blocks of the repository at ``argv[0]`` (default: the current directory)."""
    root = Path((argv or sys.argv[1:] or ["."])[0])
    for path, text in generated_files(root).items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
