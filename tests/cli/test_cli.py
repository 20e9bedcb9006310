"""The `kdlab` command: exit codes and messages for bad configs, train -> distill -> eval end to end."""

from __future__ import annotations

import json

import pytest
import yaml

from kdlab.cli import main


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_errors_exit_2_with_one_message(tmp_path, tiny_run, capsys):
    cfg = _write(tmp_path / "c.yaml", {**tiny_run, "optim": {"lrr": 0.1}})
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "optim.lrr" in err and "Did you mean 'lr'" in err
    assert not (tmp_path / "o").exists()  # nothing ran


def test_set_override_errors_exit_2(tmp_path, tiny_run, capsys):
    cfg = _write(tmp_path / "c.yaml", tiny_run)
    assert main(["train", str(cfg), "--out", str(tmp_path / "o"), "--set", "model.name=resnet21"]) == 2
    assert "Allowed:" in capsys.readouterr().err


def test_distill_without_teacher_exits_2(tmp_path, tiny_run, capsys):
    cfg = _write(tmp_path / "c.yaml", tiny_run)
    assert main(["distill", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "teacher" in capsys.readouterr().err


def test_train_distill_eval(tmp_path, tiny_run, capsys):
    small = {**tiny_run, "train": {**tiny_run["train"], "epochs": 2}}
    teacher_cfg = _write(tmp_path / "t.yaml", small)
    assert main(["-q", "train", str(teacher_cfg), "--out", str(tmp_path / "t")]) == 0
    student = {**small, "model": {"name": "mlp", "width": 8, "depth": 1},
               "teacher": {"run": str(tmp_path / "t")}, "loss": {"name": "kd", "temperature": 2, "alpha": 0.5}}
    student_cfg = _write(tmp_path / "s.yaml", student)
    assert main(["-q", "distill", str(student_cfg), "--out", str(tmp_path / "s"), "--set", "train.seed=5"]) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["loss"]["name"] == "kd"
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "s")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert result["dataset"] == "digits"


def test_eval_missing_checkpoint_exits_2(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "none.safetensors")]) == 2


def test_list_models(capsys):
    assert main(["list", "models"]) == 0
    names = capsys.readouterr().out.split()
    assert {"mlp", "cnn", "resnet", "wrn"} <= set(names)


def test_version_module_entry_point_and_user_facing_help(capsys):
    import subprocess
    import sys

    import kdlab
    from kdlab.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"kdlab {kdlab.__version__}"
    done = subprocess.run([sys.executable, "-m", "kdlab", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "Knowledge distillation that explains and fixes" in done.stdout and "exit codes" in done.stdout
    assert "Nothing else lives here" not in done.stdout and "parse, validate" not in done.stdout
    done = subprocess.run([sys.executable, "-m", "kdlab", "--version"], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == f"kdlab {kdlab.__version__}"


def test_every_imported_third_party_package_is_declared():
    """An AST walk over src/kdlab: each top-level package imported (lazily or not) is the standard library, kdlab,
    a declared dependency or a declared extra."""
    import ast
    import sys
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = {req.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower()
                for req in project["dependencies"] + [r for reqs in project["optional-dependencies"].values()
                                                      for r in reqs]}
    import_names = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}
    imported = set()
    for path in (root / "src" / "kdlab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "kdlab"}
    undeclared = sorted(name for name in third_party if import_names.get(name, name).lower() not in declared)
    assert undeclared == []
