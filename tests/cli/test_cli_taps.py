"""`kdlab models taps` output, and the `protect` / `audit` commands' argument parsing."""

from __future__ import annotations

import pytest

from kdlab.cli import build_parser, main
from kdlab.models import create_model
from kdlab.models import save_model_weights


def test_models_taps_mlp_lists_kdlab_taps_then_module_paths(capsys):
    assert main(["models", "taps", "mlp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "MLP on inputs [1, 28, 28]; shapes are per sample (no batch dim)"
    assert lines[1] == "kdlab taps:"
    assert [line.split() for line in lines[2:5]] == [["hidden1", "[256]", "hidden.0"], ["hidden2", "[256]", "hidden.1"],
                                                      ["pre_logits", "[256]", "pre_logits"]]
    assert lines[5] == "module paths:"
    paths = [line.split() for line in lines[6:]]
    assert paths[0] == ["flatten", "[784]", "Flatten"]
    assert ["hidden.0.0", "[256]", "Linear"] in paths and paths[-1] == ["head", "[10]", "Linear"]
    # the ModuleList is never called itself; it is listed only with --all
    assert not any(p[0] == "hidden" for p in paths)
    assert main(["models", "taps", "mlp", "--all"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["hidden", "(not", "called)", "ModuleList"] in listed


def test_models_taps_with_options_and_from_a_weights_file(tmp_path, capsys):
    assert main(["models", "taps", "cnn", "--in-shape", "1,8,8", "--set", "width=0.25"]) == 0
    out = capsys.readouterr().out
    assert "stage1      [8, 4, 4]" in out and "stage2      [16, 2, 2]" in out and "pre_logits  [16]" in out
    save_model_weights(tmp_path / "w.safetensors", create_model("cnn", 10, (1, 8, 8), width=0.5, depth=2))
    assert main(["models", "taps", str(tmp_path / "w.safetensors")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CNN on inputs [1, 8, 8]") and "pre_logits  [32]" in out


def test_models_taps_bad_model_exits_2(capsys):
    assert main(["models", "taps", "resnett"]) == 2
    err = capsys.readouterr().err
    assert "MODEL 'resnett' is not a registered model" in err and "Did you mean" in err
    assert main(["models", "taps", "mlp", "--in-shape", "a,b"]) == 2
    assert "--in-shape 'a,b' is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["protect", "nasty", "--help"], ["audit", "distillability", "--help"]])
def test_protect_and_audit_commands_parse(argv, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(argv)
    assert done.value.code == 0
    assert "usage: kdlab " + " ".join(argv[:2]) in capsys.readouterr().out


def test_protect_and_audit_arguments():
    args = build_parser().parse_args(["protect", "nasty", "c.yaml", "--out", "o", "--set", "a=1"])
    assert (args.command, args.config, args.out, args.overrides) == ("protect", "c.yaml", "o", ["a=1"])
    args = build_parser().parse_args(["audit", "distillability", "runs/t", "--out", "o", "--preset", "quick"])
    assert (args.command, args.model, args.out, args.preset) == ("audit", "runs/t", "o", "quick")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["audit", "distillability", "runs/t"])   # --out is required
