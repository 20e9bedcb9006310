"""Is the pilot's advice good? The pilot's ranking and pick against a full study of the same grid.

For a setting (data, teachers, student, methods), the *full study* tunes every (teacher, method) pair at the
student's full recipe: the same ``points`` hyperparameter points of the method's declared space as the pilot's first
rung at most, each trained on the tuning seed, the best on validation retrained on fresh seeds and tested
(:func:`kdlab.tuning.engine.run_plans`). Then, at each budget, ``kdlab advise`` runs on a store of its own (so it
reuses nothing), and:

- rank agreement: Spearman's rho between the pilot's ranking of the pairs (:meth:`Halving.pair_ranking`) and the
  full study's ranking by mean fresh-seed test accuracy; top-1 agreement: whether both put the same pair first;
- regret: the recommended configuration trained at the full recipe on the fresh seeds, against the full study's
  choice (the pair whose chosen configuration has the best mean fresh-seed *validation* accuracy, as a user running
  the full study would pick): test accuracy of the study's choice minus the recommendation's, paired over the fresh
  seeds, 95% t interval, in points;
- budget adherence: the command's elapsed time over its budget.

    python -m kdlab.advise.evidence --out reports/advise --work runs/advise_evidence
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..analysis.affinity import spearman_correlation
from ..analysis.stats import mean_std, paired_by_seed
from ..config import DataConfig, TeacherConfig
from ..executor import Executor
from ..io import atomic_write_json, atomic_write_text
from ..losses import search_space
from ..protect.source import load_splits
from ..report import Report
from ..report.format import format_interval, format_pm
from ..store import RunStore
from ..studies.common import StageConfig, stage_run_config
from ..tuning.engine import run_plans
from ..tuning.plan import plan_trials
from .config import AdviseConfig, parse_advise_config
from .halving import Candidate
from .pilot import PilotSetup, rung_shapes
from .recommend import recommended_config
from .run import advise

#: Fresh seeds of the full study's retrained choices (disjoint from the pilot's and the tuning seed).
FINAL_SEEDS = (10, 11, 12)
TUNING_SEEDS = (0,)


def rank_agreement(pilot_order: Sequence[str], full_scores: dict[str, float]) -> dict[str, Any]:
    """Spearman's rho between the pilot's order of the pairs (best first) and the full study's scores (higher is
    better), over the pairs both have, and whether both put the same pair first."""
    pairs = [p for p in pilot_order if p in full_scores]
    if len(pairs) < 2:
        return {"spearman": None, "top1": None, "pairs": len(pairs)}
    pilot_score = [-float(i) for i in range(len(pairs))]  # earlier = better
    full_top = max(full_scores, key=lambda p: full_scores[p])
    return {"spearman": spearman_correlation(pilot_score, [full_scores[p] for p in pairs]),
            "top1": pairs[0] == full_top, "pilot_top": pairs[0], "full_top": full_top, "pairs": len(pairs)}


def full_study(cfg: AdviseConfig, setup: PilotSetup, points: int, store: RunStore,
               executor: Executor) -> dict[str, Any]:
    """Every (teacher, method) tuned at the full recipe (module docstring), and CE on the fresh seeds."""
    plans = {}
    for teacher in setup.teachers:
        for method in cfg.pilot.methods:
            base = recommended_config(setup, Candidate(teacher, method), TUNING_SEEDS[0])
            plans[f"{teacher}/{method}"] = plan_trials(base, search_space(method).prefixed("loss"), points,
                                                       TUNING_SEEDS, cfg.pilot.search_seed, f"{teacher}/{method}")
    tuned = run_plans(plans, FINAL_SEEDS, store, executor, progress=False)
    ce = executor.run(store, [recommended_config(setup, None, s) for s in FINAL_SEEDS], progress=False)
    pairs = {}
    for label, result in tuned.items():
        pairs[label] = {"chosen": result.chosen_values,
                        "test": {f.seed: f.test_accuracy for f in result.finals},
                        "val": {f.seed: f.val_accuracy for f in result.finals},
                        "test_accuracy": result.final_test, "val_accuracy": result.final_val}
    choice = max(pairs, key=lambda p: pairs[p]["val_accuracy"]["mean"])
    # what training the study cost, from its runs' summaries (so a rerun that reuses them still reports it)
    run_dirs = {d for r in tuned.values() for t in r.trials for d in t.run_dirs.values()}
    run_dirs |= {f.run_dir for r in tuned.values() for f in r.finals} | {x["run_dir"] for x in ce}
    train_seconds = sum(json.loads((Path(d) / "summary.json").read_text())["seconds"] for d in run_dirs)
    return {"pairs": pairs, "ce": {s: float(x["test_accuracy"]) for s, x in zip(FINAL_SEEDS, ce)},
            "choice": choice, "points": points, "runs": len(run_dirs), "train_seconds": train_seconds}


def recommendation_full_runs(cfg: AdviseConfig, setup: PilotSetup, advice: dict[str, Any], store: RunStore,
                             executor: Executor) -> dict[int, float]:
    """Test accuracy per fresh seed of the recommended configuration trained at the full recipe."""
    rec = advice["recommendation"]
    if rec["pick"] is None or rec["recommended"] == "ce":
        configs = [recommended_config(setup, None, s) for s in FINAL_SEEDS]
    else:
        pick = Candidate(rec["pick"]["teacher"], rec["pick"]["method"],
                         tuple(rec["pick"]["hyperparameters"].items()))
        configs = [recommended_config(setup, pick, s) for s in FINAL_SEEDS]
    return {s: float(x["test_accuracy"]) for s, x in zip(FINAL_SEEDS, executor.run(store, configs, progress=False))}


def evaluate_setting(name: str, raw: dict[str, Any], budgets: Sequence[float], work: Path) -> dict[str, Any]:
    """Teachers, full study, and a pilot per budget for one setting (module docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    shared = RunStore(work / "store")
    executor = Executor()
    # the teachers, trained once and given to every pilot as run directories (so no pilot pays for them)
    teachers = {}
    for label, stage in raw["teachers"].items():
        job = stage_run_config(StageConfig(**stage), DataConfig(**raw["data"]), 0)
        executor.run(shared, [job], progress=False)
        teachers[label] = {"run": str(shared.path(job).resolve())}
    raw = {**raw, "teachers": teachers}
    cfg = parse_advise_config(raw)
    splits = load_splits(cfg.data, cfg.student.train_subset)
    setup = PilotSetup(cfg.data, cfg.student, {k: TeacherConfig(**v) for k, v in teachers.items()},
                       rung_shapes(cfg.pilot.rungs, cfg.student, len(splits.train), cfg.pilot.seeds), len(splits.val))
    study = full_study(cfg, setup, cfg.pilot.points, shared, executor)
    full_scores = {p: v["test_accuracy"]["mean"] for p, v in study["pairs"].items()}
    choice = study["choice"]
    config_path = work / f"{name}.yaml"
    atomic_write_text(config_path, yaml.safe_dump(raw, sort_keys=False))
    pilots = []
    for budget in budgets:
        out = work / f"pilot_{budget:g}min"
        if out.exists():
            shutil.rmtree(out)  # a pilot reusing its earlier runs would spend none of its budget
        advice = advise(config_path, budget, out, overrides=[f"store={json.dumps(str(out / 'runs'))}"], progress=False)
        rec_test = recommendation_full_runs(cfg, setup, advice, shared, executor)
        order = [f"{e['teacher']}/{e['method']}" for e in advice["ranking"]]
        pilots.append({
            "budget_minutes": budget, "elapsed_seconds": advice["elapsed_seconds"],
            "budget_ratio": advice["elapsed_seconds"] / (60 * budget), "points": advice["points"],
            "stop_reason": advice["stop_reason"], "ranking": order,
            "recommendation": advice["recommendation"],
            "recommended_test": rec_test, "recommended_test_accuracy": mean_std(list(rec_test.values())),
            "agreement": rank_agreement(order, full_scores),
            "regret": paired_by_seed(study["pairs"][choice]["test"], rec_test),
            "gain_over_ce_full": paired_by_seed(rec_test, study["ce"]),
        })
    return {"setting": name, "config": raw, "full_study": study,
            "full_ranking": sorted(full_scores, key=lambda p: -full_scores[p]), "pilots": pilots}


# every setting's pilot: 4 methods x 6 points of each method's space, 3 rungs of successive halving
PILOT: dict[str, Any] = {"methods": ["kd", "dkd", "dist", "logit_std"], "points": 6, "seeds": [0, 1, 2],
                         "rungs": [{"epochs": 0.25, "subset": 0.5, "seeds": 1, "keep": 4},
                                   {"epochs": 0.5, "subset": 1.0, "seeds": 1, "keep": 2},
                                   {"epochs": 1.0, "subset": 1.0, "seeds": 3}]}
SETTINGS: dict[str, dict[str, Any]] = {
    "digits_mlp": {
        "data": {"name": "digits", "val_size": 300},
        "teachers": {"mlp_256x2": {"model": {"name": "mlp", "width": 256, "depth": 2}, "epochs": 20},
                     "mlp_64x1": {"model": {"name": "mlp", "width": 64, "depth": 1}, "epochs": 20}},
        "student": {"model": {"name": "mlp", "width": 32, "depth": 1}, "epochs": 15, "train_subset": 500},
        "pilot": PILOT,
        "threads": 1,
    },
    "fmnist_subset_mlp": {
        "data": {"name": "fashion_mnist", "val_size": 2000},
        "teachers": {"mlp_512x2": {"model": {"name": "mlp", "width": 512, "depth": 2}, "epochs": 3},
                     "mlp_64x1": {"model": {"name": "mlp", "width": 64, "depth": 1}, "epochs": 3}},
        "student": {"model": {"name": "mlp", "width": 64, "depth": 1}, "epochs": 20, "train_subset": 2000},
        "pilot": PILOT,
        "threads": 1,
    },
}
BUDGETS = {"digits_mlp": (0.2, 0.5), "fmnist_subset_mlp": (0.75, 2.0)}


def evidence_report(results: dict[str, Any]) -> Report:
    """report.md of the evidence: per setting and budget, rank agreement, regret and budget adherence."""
    rep = Report("kdlab advise: is the pilot's advice good?")
    rep.paragraph(__doc__.split("\n\n")[1].replace("\n", " "))
    rows = []
    for s in results["settings"]:
        for p in s["pilots"]:
            a = p["agreement"]
            rows.append([s["setting"], f"{p['budget_minutes']:g}", f"{p['elapsed_seconds']:.0f}",
                         f"{p['budget_ratio']:.2f}", p["points"],
                         f"{a['spearman']:.2f}" if a["spearman"] is not None else "—",
                         {True: "yes", False: "no", None: "—"}[a["top1"]],
                         p["recommendation"]["pick"]["key"] if p["recommendation"]["pick"] else "CE",
                         format_interval(p["regret"])])
    rep.table(["setting", "budget (min)", "took (s)", "took / budget", "points", "rank rho", "top-1",
               "recommended", "regret (points)"], rows)
    pilots = [p for st in results["settings"] for p in st["pilots"]]
    rhos = [p["agreement"]["spearman"] for p in pilots if p["agreement"]["spearman"] is not None]
    top1 = [p["agreement"]["top1"] for p in pilots if p["agreement"]["top1"] is not None]
    clear = sum(1 for p in pilots if p["regret"]["n"] >= 2 and p["regret"]["low"] > 0)
    rep.paragraph(
        f"Over {len(pilots)} pilots: rank rho {min(rhos):.2f} to {max(rhos):.2f} (mean {sum(rhos) / len(rhos):.2f}); "
        f"top-1 agreement in {sum(top1)} of {len(top1)}; the regret interval lies wholly above 0 (the full study's "
        f"choice measurably better) in {clear} of {len(pilots)}; took/budget at most "
        f"{max(p['budget_ratio'] for p in pilots):.2f}. Regret > 0 means the full study's choice beat the "
        "recommendation on test; < 0 the reverse. Limits of this evidence: two small MLP settings; the full study "
        f"tunes on one seed {list(TUNING_SEEDS)} (as cheap as the pilot's early rungs), so its own choice is noisy; "
        "its ranking is by fresh-seed test accuracy of each pair's tuned choice; the first CE wave of a pilot starts "
        "before anything was measured, so a budget below the command's fixed cost (imports, data, that wave) is "
        "overrun; the cost model is conservative (the largest distillation factor measured, and the first rung "
        "sized so that 1.25 times the whole schedule's estimate fits), so pilots often end well before their "
        "budget; the stop messages of these runs count the time left before the analysis reserve "
        "(3% of the budget + 3 s).")
    for s in results["settings"]:
        rep.heading(f"Setting {s['setting']}", level=3)
        study = s["full_study"]
        rep.paragraph(f"Full study: {study['points']} points per (teacher, method) at the full recipe on tuning seed "
                      f"{list(TUNING_SEEDS)}, the choice retrained on seeds {list(FINAL_SEEDS)}: {study['runs']} "
                      f"runs, {study['train_seconds']:.0f} s of training (sum of the runs' own seconds). Its choice on "
                      f"validation: {study['choice']}. CE alone: "
                      f"{format_pm(mean_std(list(study['ce'].values())))}% test.")
        rep.table(["pair", "chosen hyperparameters", "val acc (%)", "test acc (%)"],
                  [[p, ", ".join(f"{k.removeprefix('loss.')}={v}" for k, v in v["chosen"].items()),
                    format_pm(v["val_accuracy"]), format_pm(v["test_accuracy"])]
                   for p, v in sorted(study["pairs"].items(), key=lambda kv: -kv[1]["test_accuracy"]["mean"])])
        for p in s["pilots"]:
            rep.paragraph(f"Budget {p['budget_minutes']:g} min: pilot ranking {', '.join(p['ranking'])}; "
                          f"recommended config at the full recipe: {format_pm(p['recommended_test_accuracy'])}% test, "
                          f"gain over CE {format_interval(p['gain_over_ce_full'])} points"
                          + (f"; stopped early: {p['stop_reason']}" if p["stop_reason"] else "") + ".")
    rep.code(results["command"])
    return rep


def main(argv: Sequence[str] | None = None) -> int:
    """Run every setting at its two budgets; write results.json and report.md/.html into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/advise")
    parser.add_argument("--work", default="runs/advise_evidence")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS))
    args = parser.parse_args(argv)
    settings = [evaluate_setting(name, SETTINGS[name], BUDGETS[name], Path(args.work) / name)
                for name in args.settings]
    results = json.loads(json.dumps({"settings": settings, "final_seeds": list(FINAL_SEEDS),
                                     "command": "python -m kdlab.advise.evidence "
                                     + " ".join(sys.argv[1:] if argv is None else argv)}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", results)
    evidence_report(results).write(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
