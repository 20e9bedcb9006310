"""Generated documentation is current: the studies' rule sections come from their claim declarations, and the
README's claims table prints exactly what the committed reports' results.json say."""

from __future__ import annotations

import json
from pathlib import Path

from kdlab.studies.docs import (REPORTS, capacity_map_summary, claims_table, generated_files, replace_block,
                               rules_markdown)

ROOT = Path(__file__).resolve().parents[1]


def test_docs_and_readme_blocks_are_current():
    stale = [str(path.relative_to(ROOT)) for path, text in generated_files(ROOT).items() if path.read_text() != text]
    assert not stale, f"run `python -m kdlab.studies.docs` to regenerate: {stale}"


def test_readme_table_prints_every_committed_verdict_verbatim():
    readme = (ROOT / "README.md").read_text()
    for name in REPORTS:
        for claim in json.loads((ROOT / "reports" / name / "results.json").read_text())["claims"]:
            assert claim["evidence"].replace("|", "\\|") in readme
            assert claim["claim"].replace("|", "\\|") in readme


def test_committed_reports_carry_the_declared_claim_fields():
    for name in REPORTS:
        results = json.loads((ROOT / "reports" / name / "results.json").read_text())
        for claim in results["claims"]:
            assert {"id", "rule", "statistic", "interval", "n", "selected_on", "holds", "evidence"} <= set(claim)


def test_rules_are_generated_from_the_declarations():
    text = rules_markdown("nasty")
    assert "holds if the 95% interval lies above -1.5 points" in text
    assert "not applicable unless: the nasty teacher hurts its KD students" in text
    assert replace_block("a\n<!-- generated: x -->\nold\n<!-- end generated -->\nb", "x", "new") == (
        "a\n<!-- generated: x -->\nnew\n<!-- end generated -->\nb")


def test_claims_table_escapes_pipes(tmp_path):
    report = tmp_path / "kinds"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({"study": "kinds", "claims": [
        {"claim": "a | b", "holds": None, "not_applicable": "x", "evidence": "e"}]}))
    assert "| [kinds](reports/kinds/report.md) | a \\| b | not applicable | e |" in claims_table(tmp_path)


def test_capacity_map_summary_prints_the_committed_map_in_the_rule_s_words(tmp_path):
    assert "not been committed" in capacity_map_summary(tmp_path)
    results = json.loads((ROOT / "reports" / "capacity-map-quick" / "results.json").read_text())
    cell = results["cells"][0]
    cell["verdict"].update(verdict="present", holds=True)
    cell["verdict"]["adjusted_interval"].update(low=0.021, high=0.048)
    cell["gap"].update(gap=0.034, low=0.02, high=0.05, best_teacher="mlp-w16-d2")
    (tmp_path / "capacity-map").mkdir()
    (tmp_path / "capacity-map" / "results.json").write_text(json.dumps(results))
    text = capacity_map_summary(tmp_path)
    assert f"Mismatch present (the BH-adjusted interval of G lies above delta) in 1 cell(s): {cell['key']}." in text
    assert "Mismatch absent (the BH-adjusted interval lies at or below delta) in 1 cell(s):" in text
    assert (f"| {cell['key']} | mlp-w16-d2 | mlp-w256-d2 | +3.40 [+2.00, +5.00] | [+2.10, +4.80] | present |"
            in text)
    assert "no remedy ran" in text
