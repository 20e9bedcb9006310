"""The capacity-map study: its plan against the declared grid (and TAKD's assistants and the remedies' trials), its
statistics and claims on hand-made accuracy tables (true, false, undecided and not applicable), the pre-registered
text pinned, and the quick preset end to end with a byte-identical report rebuild."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kdlab.analysis.mismatch_gap import difference_interval
from kdlab.store import RunStore
from kdlab.studies import STUDIES, run_study
from kdlab.studies.capacity_map import (CAPACITY_MAP, PREREGISTRATION, CapacityMapConfig, _assistant_jobs,
                                       _remedy_plans, claims, plan, preregistered_text, remedy_claims)
from kdlab.studies.capacity_map_grid import PRESETS, Cell, plan_cells, run_counts
from kdlab.studies.capacity_map_plan import family_of, teacher_config
from kdlab.studies.capacity_map_stats import (cell_statistics, choose_configuration, decide_cells, decide_remedies,
                                              remedy_statistics)

QUICK = PRESETS["quick"]
SMALL, LARGE = "mlp-w16-d2", "mlp-w256-d2"
PARAMS = {SMALL: 2_180, LARGE: 94_820}
LINEAR_CELL, MLP_CELL = (cell.key for cell in plan_cells(QUICK))


def table(rows: list[list[float]]) -> dict[int, dict[int, float]]:
    """{teacher_seed: {student_seed: accuracy}}: rows = teacher seeds, columns = student seeds."""
    return {s: {r: v for r, v in enumerate(row)} for s, row in enumerate(rows)}


def flat(value: float, teacher_seeds: int = 2) -> dict[int, dict[int, float]]:
    return table([[value, value] for _ in range(teacher_seeds)])


def cell_gap(small_test, large_test, small_val: float, large_val: float, small_seeds: int = 2):
    """A quick-grid cell: KD at tau 2 is the better temperature on validation for both teachers."""
    val = {SMALL: {2.0: flat(small_val, small_seeds), 4.0: flat(small_val - 0.05, small_seeds)},
           LARGE: {2.0: flat(large_val), 4.0: flat(large_val - 0.05)}}
    bad = {SMALL: flat(0.0, small_seeds), LARGE: flat(0.0)}  # test at the temperature validation rejected
    test = {SMALL: {2.0: table(small_test), 4.0: bad[SMALL]}, LARGE: {2.0: table(large_test), 4.0: bad[LARGE]}}
    return cell_statistics(val, test, PARAMS, QUICK.threshold)


SMALL_TEST = [[0.70, 0.71], [0.71, 0.72]]
LARGE_TEST = [[0.60, 0.61], [0.61, 0.63]]


def results_of(gaps: dict[str, dict]) -> dict:
    decisions = decide_cells(gaps, QUICK.threshold, QUICK.alpha)
    return {"cells": [{"key": key, "gap": gap, "verdict": decisions["verdicts"][key]} for key, gap in gaps.items()],
            "family": decisions["family"]}


# SHA-256 of docs/studies/capacity-map.md as committed before any map run (3b64485, c186657; 2026-12-03): the
# pre-registered text may gain dated addenda below it, never a change above them
PREREGISTERED_SHA256 = "5532a4e9b8ff9936d03e881f67cba9e665173a1b5202762252a6ea3efccd91f5"


def test_the_preregistered_text_is_unchanged() -> None:
    document = (Path(__file__).resolve().parents[2] / PREREGISTRATION).read_text()
    assert hashlib.sha256(preregistered_text(document).encode()).hexdigest() == PREREGISTERED_SHA256
    assert preregistered_text("rule\n## Addendum 2026-12-04\nlater") == "rule"


def test_cell_statistics_by_hand() -> None:
    gap = cell_gap(SMALL_TEST, LARGE_TEST, 0.70, 0.65)
    assert gap["best_teacher"] == SMALL and gap["largest_teacher"] == LARGE
    assert gap["per_teacher"][SMALL]["temperature"] == 2.0  # chosen on validation; test at tau 4 is never read
    # G = 0.71 - 0.6125; V = var(0.705, 0.715)/2 + var(0.605, 0.62)/2 + var(0.10, 0.095)/2 = 8.75e-5
    assert gap["gap"] == pytest.approx(0.0975, abs=1e-12)
    assert gap["se"] ** 2 == pytest.approx(2.5e-5 + 5.625e-5 + 6.25e-6, rel=1e-9)
    # the heat map's entries: each teacher minus the largest; the largest against itself is exactly 0
    assert gap["per_teacher"][SMALL]["minus_largest"]["gap"] == pytest.approx(0.0975, abs=1e-12)
    assert gap["per_teacher"][LARGE]["minus_largest"] | {"gap": 0.0, "low": 0.0, "high": 0.0, "se": 0.0} == \
        gap["per_teacher"][LARGE]["minus_largest"]


def test_cell_claims_present_absent_undecided_and_not_applicable() -> None:
    cfg = CapacityMapConfig.model_validate({"grid": "quick"})
    by_cell = {claim.id.split("|", 1)[1]: claim for claim in claims(cfg)}
    assert sorted(by_cell) == sorted([LINEAR_CELL, MLP_CELL])
    assert by_cell[LINEAR_CELL].rule_text().startswith("holds if the BH-adjusted interval lies above 1 points")

    # a 9.75-point gap (present) and a cell whose largest teacher is best on validation (G = 0: absent)
    results = results_of({LINEAR_CELL: cell_gap(SMALL_TEST, LARGE_TEST, 0.70, 0.65),
                          MLP_CELL: cell_gap(SMALL_TEST, LARGE_TEST, 0.60, 0.65)})
    present, absent = by_cell[LINEAR_CELL].evaluate(results), by_cell[MLP_CELL].evaluate(results)
    assert present["holds"] is True and present["interval"][0] > 0.01
    assert present["selections"]["best teacher B"] == SMALL
    assert absent["holds"] is False and absent["interval"] == [0.0, 0.0]
    # the claims read the BH-adjusted intervals, so they agree with the map's verdicts
    assert [c["verdict"]["holds"] for c in results["cells"]] == [True, False]

    # noisy students (undecided) and a best teacher with one finished seed (no interval: not applicable)
    results = results_of({LINEAR_CELL: cell_gap([[0.74, 0.66], [0.69, 0.73]], [[0.70, 0.71], [0.69, 0.70]],
                                                0.70, 0.65),
                          MLP_CELL: cell_gap([[0.70, 0.71]], LARGE_TEST, 0.70, 0.65, small_seeds=1)})
    undecided, missing = by_cell[LINEAR_CELL].evaluate(results), by_cell[MLP_CELL].evaluate(results)
    assert undecided["holds"] is None and undecided["not_applicable"] is None
    assert undecided["interval"][0] < 0.01 < undecided["interval"][1]
    assert missing["holds"] is None and "teacher-seed variation" in missing["not_applicable"]
    assert results["family"]["num_tested"] == 1 and results["family"]["num_null"] == 1


ATS_TEST = [[0.705, 0.715], [0.715, 0.725]]
SYMMETRIC_TEST = [[0.50, 0.51], [0.51, 0.53]]


def test_remedy_statistics_choose_on_validation_and_read_test() -> None:
    values = [{"tau_gt": 4.0}, {"tau_gt": 8.0}, {"tau_gt": 6.0}]
    val = [flat(0.60), flat(0.62), flat(0.62)]
    assert choose_configuration(val, values) == 1  # best validation; the tie with 2 goes to the earlier one
    test = [flat(0.90), table(ATS_TEST), flat(0.95)]  # configurations 0 and 2 look better on test: never chosen
    stats = remedy_statistics(val, test, values, table(LARGE_TEST), table(SMALL_TEST), best_is_largest=False,
                              control_test=table(SYMMETRIC_TEST))
    assert stats["chosen"] == 1 and stats["values"] == {"tau_gt": 8.0}
    assert stats["test_accuracy"] == pytest.approx(0.715)
    assert stats["gain"] == difference_interval(table(ATS_TEST), table(LARGE_TEST), same_teachers=True)
    assert stats["gain"]["gap"] == pytest.approx(0.1025)
    assert stats["closes"] == difference_interval(table(ATS_TEST), table(SMALL_TEST))
    assert stats["asymmetry"]["gap"] == pytest.approx(0.2025)


def remedy_results() -> dict:
    """Remedies in the linear cell (B = small, L = large): ATS gains (and is within delta of B? undecided), its
    symmetric control loses on both counts, ATS beats the control; TAKD had nothing to try."""
    one = [flat(0.6)]
    kd_largest, kd_best = table(LARGE_TEST), table(SMALL_TEST)
    control = table(SYMMETRIC_TEST)
    remedies = {LINEAR_CELL: {
        "ats": remedy_statistics(one, [table(ATS_TEST)], [{}], kd_largest, kd_best, False, control),
        "ats_symmetric": remedy_statistics(one, [control], [{}], kd_largest, kd_best, False)}}
    decided = decide_remedies(remedies, QUICK.threshold, QUICK.alpha)
    return {"remedies": remedies, "remedy_family": {k: v["family"] for k, v in decided.items()},
            "remedy_verdicts": {k: v["verdicts"] for k, v in decided.items()}}


def test_remedy_claims_true_false_undecided_and_not_applicable() -> None:
    results = remedy_results()
    entries = {c.id: c.evaluate(results) for c in remedy_claims(QUICK, LINEAR_CELL, ["ats", "ats_symmetric", "takd"])}
    holds = {key.replace(f"|{LINEAR_CELL}|", "|"): e["holds"] for key, e in entries.items()}
    assert holds == {"gain|ats": True, "closes|ats": None, "asymmetry|ats": True, "gain|ats_symmetric": False,
                     "closes|ats_symmetric": False, "gain|takd": None, "closes|takd": None}
    assert "no intermediate teacher size" in entries[f"gain|{LINEAR_CELL}|takd"]["not_applicable"]
    assert entries[f"closes|{LINEAR_CELL}|ats"]["rule"].startswith(
        "holds if the BH-adjusted interval lies above -1 points")
    # every claim's verdict is the family's BH verdict for that (cell, remedy) pair
    for key, entry in entries.items():
        statistic, cell, remedy = key.split("|")
        if entry["not_applicable"] is None:
            assert entry["holds"] is results["remedy_verdicts"][statistic][f"{cell}|{remedy}"]["holds"]


def test_full_plan_trains_the_declared_runs(tmp_path) -> None:
    cfg = CapacityMapConfig.model_validate({})
    waves = plan(cfg, RunStore(tmp_path))
    counts = run_counts(PRESETS["full"])
    teachers, students = waves[0].runs, waves[1].runs
    assert len(teachers) == counts["teachers"] == 45
    kd = [p for p in students if p.tags["role"] == "kd"]
    assert len(kd) == counts["kd_students"] == 3645 and len(students) - len(kd) == counts["ce_students"] == 45
    assert {p.tags["cell"] for p in kd} == {c.key for c in plan_cells(PRESETS["full"])}
    assert len({p.job.digest() for p in (*teachers, *students)}) == 45 + 3645 + 45  # no run planned twice
    # one teacher run serves both lengths: it keeps the early epoch, and early cells distil from that epoch
    synthetic = [p.job for p in teachers if p.tags["dataset"] == "hierarchical_mixture"]
    assert all(job.train.keep_epochs == [5] and job.train.epochs == 30 for job in synthetic)
    early = [p.job for p in kd if "/early/" in p.tags["cell"] and p.tags["cell"].startswith("fashion_mnist/mlp")]
    assert early and all(job.teacher.epoch == 3 for job in early)
    assert all(p.job.train.num_threads == 1 for p in (*teachers, *students))
    assert [w.name for w in waves] == ["teachers", "KD and CE students", "TAKD assistants", "remedies"]


@pytest.mark.slow
def test_quick_preset_end_to_end_with_remedies_and_a_byte_identical_rebuild(tmp_path, assert_report_rebuilds) -> None:
    assert STUDIES.get("capacity-map") is CAPACITY_MAP
    # remedies in every cell (not only where mismatch is present) so the remedy path runs on the tiny corner
    overrides = ["remedy_cells=all", "remedies=[ats,ats_symmetric,eskd]"]
    results = run_study(CAPACITY_MAP, out=tmp_path, preset="quick", overrides=overrides, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["grid"]["run_counts"] == {"cells": 2, "teachers": 4, "kd_students": 32, "ce_students": 4}
    remedy_runs = 2 * 3 * 3 * 2 * 2  # cells x remedies x configurations x teacher seeds x student seeds
    assert saved["runs_trained"] == 4 + 32 + 4 + remedy_runs and saved["runs_reused"] == 0
    assert [c["key"] for c in saved["cells"]] == [LINEAR_CELL, MLP_CELL]
    for cell in saved["cells"]:
        assert set(cell["gap"]["per_teacher"]) == {SMALL, LARGE}
        assert cell["verdict"]["verdict"] in ("present", "absent", "undecided") or cell["gap"]["reason"]
    # claims: each cell's, then per cell ats (gain, closes, asymmetry), its control and eskd (gain, closes)
    ids = [c["id"] for c in saved["claims"]]
    assert len(ids) == 2 + 2 * 7
    for cell in saved["cells"]:
        claim = next(c for c in saved["claims"] if c["id"] == f"mismatch|{cell['key']}")
        assert claim["holds"] is cell["verdict"]["holds"]
    assert set(saved["remedies"][LINEAR_CELL]) == {"ats", "ats_symmetric", "eskd"}
    teachers = saved["teachers"]
    assert len(teachers) == 4 and all(t["labelled"]["1000"]["bayes"]["distance"]["kl"] > 0 for t in teachers)
    assert saved["report_files"] == ["gap_heatmaps.png", "derived_std_vs_capacity.png", "remedy_gains.png",
                                     "report.md", "report.html"]
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# kdlab capacity map — QUICK PRESET, not the map")
    assert saved["preregistration"]["sha256"] == PREREGISTERED_SHA256
    assert_report_rebuilds(tmp_path, saved["report_files"])
    again = run_study(CAPACITY_MAP, out=tmp_path, preset="quick", overrides=overrides, progress=False)
    assert again["runs_trained"] == 0 and again["runs_reused"] == saved["runs_trained"]
    assert again["cells"] == results["cells"]


def test_takd_assistants_and_remedy_trials_are_built_from_the_largest_teacher(tmp_path) -> None:
    grid, store = PRESETS["full"], RunStore(tmp_path)
    family = family_of(grid, "fashion_mnist", "mlp")
    largest = {s: store.path(teacher_config(grid, family, family.teachers[-1], s)) for s in grid.teacher_seeds}
    early = _assistant_jobs(grid, store, family, "early")
    # the 3 intermediate sizes x 3 teacher seeds, each distilled from the largest teacher of its seed at epoch 3
    assert sorted({label for label, _ in early}) == ["mlp-w128-d2", "mlp-w32-d2", "mlp-w512-d2"]
    assert all(job.teacher.run == str(largest[s]) and job.teacher.epoch == 3 and job.train.keep_epochs == [3]
               for (_, s), job in early.items())
    cell = Cell("fashion_mnist", "mlp", "early", 1000, "linear")
    cfg = CapacityMapConfig.model_validate({})
    plans = {(name, index): trial_plans for name, index, trial_plans in _remedy_plans(cfg, store, cell, 4.0)}
    assert sorted({name for name, _ in plans}) == sorted(cfg.remedies) and len(plans) == 8 * 3
    for (name, index), trial_plans in plans.items():
        for seed, trial_plan in trial_plans.items():
            jobs = trial_plan.run_configs()
            assert [job.train.seed for job in jobs] == list(grid.student_seeds)  # one run per student seed
            teacher = jobs[0].teacher
            if name == "takd":  # the student learns from the assistant of that seed, at the cell's length
                assert teacher.run == str(store.path(early[(family.teachers[1 + index].label, seed)]))
            else:
                assert teacher.run == str(largest[seed])
            assert teacher.epoch == 3
    assert plans[("eskd", 2)][0].run_configs()[0].teacher.stop_fraction == 0.75
    assert plans[("ats", 0)][0].run_configs()[0].loss.as_dict() == {
        "name": "ats", "tau_gt": 4.0, "tau_other": 2.0, "tau_student": 1.0, "alpha": 0.5}
    assert plans[("dkd", 0)][0].run_configs()[0].loss.as_dict()["beta"] == 8.0
