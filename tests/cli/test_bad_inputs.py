"""The bad-input corpus: every way a user can hand kdlab a wrong input ends in one clear message and exit code.

Each case runs ``kdlab.cli.main`` in-process (faithful: the CLI maps every error itself) and asserts the exit code
(2 config/input, 3 data), that stderr names the key or file, that nothing escaped as an exception (a traceback at the
process level; a handful of cases re-run as real processes below to show it), and that ``--out`` is exactly as it was
before: absent when it was absent, byte-identical when it held something. Tiny inputs throughout (digits, 1 epoch).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

from kdlab.cli import main
from kdlab.config import parse_yaml
from kdlab.data import fashion_mnist as fm
from kdlab.data import write_idx
from kdlab.errors import ConfigError
from kdlab.models import create_model
from kdlab.runlock import acquire_run_lock
from kdlab.models import save_model_weights

BASE: dict[str, Any] = {
    "data": {"name": "digits", "val_size": 200, "seed": 0},
    "model": {"name": "mlp", "width": 8, "depth": 1},
    "optim": {"name": "sgd", "lr": 0.1},
    "train": {"epochs": 1, "batch_size": 64, "seed": 0, "progress": False},
}
# a 514-byte "billion laughs": 12 levels of nine aliases, 9^12 (~2.8e11) strings once expanded
_BOMB_CORE = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
              + "".join(f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefghijk", "bcdefghijkl"))
              + "model: {name: mlp}\n")
ALIAS_BOMB = _BOMB_CORE + "#" + "." * (514 - len(_BOMB_CORE) - 2) + "\n"


class Evil:
    """A pickle payload that would create a marker directory if anything ever unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


@dataclass
class World:
    """Files shared by all cases: a trained digits teacher and a zoo of broken weights."""

    root: Path
    teacher_run: Path
    files: dict[str, Path] = field(default_factory=dict)
    marker: Path | None = None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    cfg = root / "teacher.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "model": {"name": "mlp", "width": 16, "depth": 1},
                                   "train": {**BASE["train"], "keep_epochs": [1]}}))
    assert main(["-q", "train", str(cfg), "--out", str(root / "teacher")]) == 0
    w = World(root, root / "teacher", marker=root / "PAYLOAD-RAN")
    best = w.teacher_run / "checkpoints" / "best.safetensors"
    good = best.read_bytes()
    f = w.files
    f["good"] = best
    f["pickle_st"] = root / "evil.safetensors"
    f["pickle_st"].write_bytes(pickle.dumps(Evil(w.marker), protocol=2))
    f["pickle_pt"] = root / "evil.pt"
    f["pickle_pt"].write_bytes(pickle.dumps(Evil(w.marker), protocol=4))
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    f["zip_st"] = root / "torchsave.safetensors"
    f["zip_st"].write_bytes(buf.getvalue())
    f["truncated"] = root / "truncated.safetensors"
    f["truncated"].write_bytes(good[: len(good) // 2])
    f["header_only"] = root / "header_only.safetensors"
    n = int.from_bytes(good[:8], "little")
    f["header_only"].write_bytes(good[: 8 + n])
    f["empty"] = root / "empty.safetensors"
    f["empty"].write_bytes(b"")
    f["garbage"] = root / "garbage.safetensors"
    f["garbage"].write_bytes(bytes(range(256)) * 8)
    f["bad_header"] = root / "bad_header.safetensors"
    f["bad_header"].write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!}" + b"\0" * 64)
    # a valid file of another architecture / class count / input shape
    f["wide"] = save_model_weights(root / "wide.safetensors", create_model("mlp", 10, (64,), width=32, depth=1))
    f["five_classes"] = save_model_weights(root / "five.safetensors", create_model("mlp", 5, (64,), width=16, depth=1))
    f["image_teacher"] = save_model_weights(root / "image.safetensors", create_model("mlp", 10, (1, 28, 28), width=16,
                                                                                      depth=1))
    f["bad_spec"] = save_model_weights(root / "bad_spec.safetensors", create_model("mlp", 10, (64,), width=16,
                                                                                   depth=1))
    from kdlab.io import load_tensors, save_tensors

    save_tensors(f["bad_spec"], load_tensors(f["bad_spec"]), {"format": "kdlab-weights-v1", "model_spec": "{oops"})
    for name, source in (("run_five", "five_classes"), ("run_pickle", "pickle_st"), ("run_truncated", "truncated"),
                         ("run_image", "image_teacher")):
        run = root / name / "checkpoints"
        run.mkdir(parents=True)
        (run / "best.safetensors").write_bytes(f[source].read_bytes())
        f[name] = run.parent
    (root / "unfinished_run").mkdir()
    f["unfinished_run"] = root / "unfinished_run"
    return w


@dataclass
class Ctx:
    """What a case sees: the world, a private directory, the --out it must leave untouched."""

    world: World
    tmp: Path
    out: Path
    monkeypatch: pytest.MonkeyPatch

    def config(self, data: Any, name: str = "c.yaml") -> Path:
        path = self.tmp / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    code: int
    mentions: tuple[str, ...]  # each formatted with {out}, {tmp}, {root}
    prepare_out: Callable[[Ctx], None] | None = None


def patched(*edits: tuple[str, Any]) -> dict[str, Any]:
    """BASE with dotted keys set (a value of ``DELETE`` removes the key)."""
    cfg = copy.deepcopy(BASE)
    for dotted, value in edits:
        *parents, key = dotted.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(key, None)
        else:
            node[key] = value
    return cfg


DELETE = object()


def cfg_case(case_id: str, edits: list[tuple[str, Any]] | dict[str, Any], code: int, *mentions: str,
             command: str = "train", extra: tuple[str, ...] = ()) -> Case:
    def argv(ctx: Ctx) -> list[str]:
        data = edits if isinstance(edits, dict) else patched(*edits)
        data = _fill(data, ctx)
        return [command, str(ctx.config(data)), "--out", str(ctx.out), *extra]
    return Case(case_id, argv, code, mentions)


def _fill(value: Any, ctx: Ctx) -> Any:
    """Replace {root}/{tmp} placeholders in strings of a config (paths to the world's files)."""
    if isinstance(value, str):
        return value.format(root=ctx.world.root, tmp=ctx.tmp)
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ctx) for v in value]
    return value


def text_case(case_id: str, text: str | bytes, code: int, *mentions: str) -> Case:
    def argv(ctx: Ctx) -> list[str]:
        path = ctx.tmp / "c.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["train", str(path), "--out", str(ctx.out)]
    return Case(case_id, argv, code, mentions or ("c.yaml",))


def set_case(case_id: str, overrides: list[str], code: int, *mentions: str) -> Case:
    def argv(ctx: Ctx) -> list[str]:
        return ["train", str(ctx.config(BASE)), "--out", str(ctx.out), *[a for o in overrides for a in ("--set", o)]]
    return Case(case_id, argv, code, mentions)


def teacher(**fields: Any) -> dict[str, Any]:
    return patched(("teacher", fields), ("loss", {"name": "kd", "temperature": 2, "alpha": 0.5}))


def teacher_model(weights: str, **model: Any) -> dict[str, Any]:
    return teacher(model={"name": "mlp", "width": 16, "depth": 1, **model}, weights=weights)


# ------------------------------------------------------------------------------------------------ the corpus

NUMERIC_FIELDS = [  # (dotted key, bad values with an id each)
    ("optim.lr", [("bool", True), ("zero", 0), ("negative", -0.1), ("inf", float("inf")), ("nan", float("nan")),
                  ("text", "fast"), ("list", [0.1])]),
    ("optim.momentum", [("one", 1.0), ("negative", -0.5), ("bool", True), ("inf", float("inf"))]),
    ("optim.weight_decay", [("inf", float("inf")), ("negative", -1e-4), ("bool", False), ("nan", float("nan"))]),
    ("schedule.warmup_epochs", [("negative", -1), ("inf", float("inf")), ("bool", True)]),
    ("schedule.gamma", [("zero", 0), ("above_one", 2.0), ("bool", True)]),
    ("schedule.min_lr", [("negative", -1.0), ("inf", float("inf"))]),
    ("train.epochs", [("bool", True), ("zero", 0), ("negative", -3), ("fraction", 2.5), ("text", "ten")]),
    ("train.batch_size", [("zero", 0), ("bool", True), ("fraction", 1.5), ("negative", -64)]),
    ("train.eval_batch_size", [("zero", 0), ("bool", False)]),
    ("train.seed", [("2^70", 2**70), ("negative", -1), ("bool", True), ("fraction", 0.5), ("text", "lucky")]),
    ("train.checkpoint_every", [("zero", 0), ("bool", True)]),
    ("train.num_threads", [("zero", 0), ("bool", True)]),
    ("data.val_size", [("negative", -1), ("inf", float("inf")), ("bool", True), ("too_big", 100000),
                       ("fraction_one", 1.5)]),
    ("data.train_subset", [("zero", 0), ("bool", True), ("below_classes", 5)]),
    ("data.seed", [("2^70", 2**70), ("negative", -7), ("bool", True)]),
    ("data.crop_padding", [("too_big", 17), ("negative", -1), ("bool", True)]),
    ("hint_epochs", [("negative", -1), ("bool", True), ("without_features", 1)]),
]

CASES: list[Case] = []
for dotted, values in NUMERIC_FIELDS:
    for value_id, value in values:
        CASES.append(cfg_case(f"{dotted}={value_id}", [(dotted, value)], 2, dotted.rsplit(".", 1)[-1]))

CASES += [
    # optimiser betas, keep_epochs, enumerations, booleans
    cfg_case("optim.betas=above_one", [("optim.name", "adam"), ("optim.betas", [0.9, 1.5])], 2, "optim.betas"),
    cfg_case("optim.betas=one", [("optim.name", "adam"), ("optim.betas", [1.0, 0.999])], 2, "optim.betas"),
    cfg_case("optim.betas=negative", [("optim.name", "adam"), ("optim.betas", [-0.1, 0.999])], 2, "optim.betas"),
    cfg_case("optim.betas=one_value", [("optim.name", "adam"), ("optim.betas", [0.9])], 2, "optim.betas"),
    cfg_case("optim.betas=bool", [("optim.name", "adam"), ("optim.betas", [True, 0.999])], 2, "optim.betas"),
    cfg_case("optim.betas=text", [("optim.name", "adam"), ("optim.betas", "fast")], 2, "optim.betas"),
    cfg_case("optim.name=unknown", [("optim.name", "rmsprop")], 2, "optim.name"),
    cfg_case("optim.nesterov=text", [("optim.nesterov", "perhaps")], 2, "optim.nesterov"),
    cfg_case("schedule.name=unknown", [("schedule.name", "linear")], 2, "schedule.name"),
    cfg_case("schedule.milestones=bool", [("schedule.milestones", [True])], 2, "schedule.milestones"),
    cfg_case("schedule.milestones=text", [("schedule.milestones", "soon")], 2, "schedule.milestones"),
    cfg_case("train.keep_epochs=0", [("train.keep_epochs", [0])], 2, "train.keep_epochs"),
    cfg_case("train.keep_epochs=after_last", [("train.keep_epochs", [2])], 2, "train.keep_epochs", "1..1"),
    cfg_case("train.keep_epochs=negative", [("train.keep_epochs", [-1])], 2, "train.keep_epochs"),
    cfg_case("train.keep_epochs=bool", [("train.keep_epochs", [True])], 2, "train.keep_epochs"),
    cfg_case("train.keep_epochs=text", [("train.keep_epochs", "last")], 2, "train.keep_epochs"),
    cfg_case("train.device=unknown", [("train.device", "tpu")], 2, "train.device"),
    cfg_case("train.device=bad_index", [("train.device", "cuda:x")], 2, "train.device"),
    cfg_case("train.precision=unknown", [("train.precision", "fp8")], 2, "train.precision"),
    cfg_case("train.deterministic=text", [("train.deterministic", "maybe")], 2, "train.deterministic"),
    cfg_case("data.hflip=text", [("data.hflip", "sideways")], 2, "data.hflip"),
    # unknown, missing and shadowing keys
    cfg_case("unknown_top_level_key", [("trian", {"epochs": 1})], 2, "trian", "train"),
    cfg_case("unknown_optim_key", [("optim.lrr", 0.1)], 2, "optim.lrr", "lr"),
    cfg_case("unknown_train_key", [("train.epoch", 2)], 2, "train.epoch", "epochs"),
    cfg_case("unknown_data_key", [("data.dir", "/tmp")], 2, "data.dir"),
    cfg_case("missing_model", [("model", DELETE)], 2, "model"),
    cfg_case("model_without_name", [("model", {"width": 8})], 2, "model.name"),
    cfg_case("model.name=unknown", [("model.name", "resnet21")], 2, "model.name", "resnet"),
    cfg_case("model_option_unknown", [("model.widht", 8)], 2, "widht", "width"),
    cfg_case("model.num_classes_given", [("model.num_classes", 10)], 2, "num_classes", "model"),
    cfg_case("model.in_shape_given", [("model.in_shape", [64])], 2, "in_shape", "model"),
    cfg_case("model.width=zero", [("model.width", 0)], 2, "width"),
    cfg_case("model.depth=negative", [("model.depth", -1)], 2, "depth"),
    cfg_case("data.name=unknown", [("data.name", "mnist")], 2, "data.name", "fashion_mnist"),
    cfg_case("data.options.data_dir", [("data.options", {"data_dir": "/tmp"})], 2, "data.options", "data.data_dir"),
    cfg_case("data.options.seed", [("data.options", {"seed": 1})], 2, "data.options", "data.seed"),
    cfg_case("data.options.unknown", [("data.options", {"colour": True})], 2, "colour"),
    cfg_case("loss.name=unknown", [("loss", {"name": "kld"})], 2, "loss", "kld"),
    cfg_case("loss_needs_teacher", [("loss", {"name": "kd", "temperature": 4})], 2, "loss.name", "teacher"),
    cfg_case("loss.temperature=zero", teacher(run="{root}/teacher") | {"loss": {"name": "kd", "temperature": 0}},
             2, "temperature"),
    cfg_case("loss.alpha=above_one", teacher(run="{root}/teacher") | {"loss": {"name": "kd", "alpha": 1.5}},
             2, "alpha"),
    cfg_case("loss_option_unknown", teacher(run="{root}/teacher") | {"loss": {"name": "kd", "temprature": 4}},
             2, "temprature"),
    cfg_case("scheme.name=unknown", [("scheme", {"name": "tripleml"})], 2, "scheme"),
    cfg_case("features_without_teacher", [("features", [{"student_tap": "pre_logits", "teacher_tap": "pre_logits",
                                                          "loss": {"name": "fitnet"}}])], 2, "features", "teacher"),
    cfg_case("features_unknown_loss", teacher(run="{root}/teacher") | {
        "features": [{"student_tap": "pre_logits", "teacher_tap": "pre_logits", "loss": {"name": "fitnett"}}]},
        2, "features[0].loss"),
    cfg_case("features_unknown_tap", teacher(run="{root}/teacher") | {
        "features": [{"student_tap": "stage9", "teacher_tap": "pre_logits", "loss": {"name": "fitnet"}}]},
        2, "stage9"),
]

CASES += [
    # the teacher
    cfg_case("distill_without_teacher", BASE, 2, "teacher", command="distill"),
    cfg_case("teacher.run=missing", teacher(run="{root}/no-such-run"), 2, "teacher.run", "no-such-run"),
    cfg_case("teacher.run=unfinished", teacher(run="{root}/unfinished_run"), 2, "teacher.run", "best.safetensors"),
    cfg_case("teacher.run=pickle", teacher(run="{root}/run_pickle"), 2, "teacher.run", "pickle"),
    cfg_case("teacher.run=truncated", teacher(run="{root}/run_truncated"), 2, "teacher.run", "best.safetensors"),
    cfg_case("teacher.run=five_classes", teacher(run="{root}/run_five"), 2, "teacher.run", "5 classes"),
    cfg_case("teacher.run=image_inputs", teacher(run="{root}/run_image"), 2, "teacher.run", "[1, 28, 28]"),
    cfg_case("teacher.epoch=not_kept", teacher(run="{root}/teacher", epoch=3), 2, "teacher.epoch", "keep_epochs"),
    cfg_case("teacher.epoch_without_run", teacher_model("{root}/teacher/checkpoints/best.safetensors") | {
        "teacher": {"model": {"name": "mlp"}, "weights": "x", "epoch": 1}}, 2, "teacher", "epoch"),
    cfg_case("teacher_run_and_weights", teacher(run="{root}/teacher", weights="{root}/wide.safetensors",
                                                model={"name": "mlp"}), 2, "teacher", "not both"),
    cfg_case("teacher_model_without_weights", teacher(model={"name": "mlp"}), 2, "teacher", "weights"),
    cfg_case("teacher.weights=missing", teacher_model("{root}/none.safetensors"), 2, "teacher.weights",
             "none.safetensors"),
    cfg_case("teacher.weights=directory", teacher_model("{root}/teacher"), 2, "teacher.weights", "directory"),
    cfg_case("teacher.weights=pickle_renamed_safetensors", teacher_model("{root}/evil.safetensors"), 2,
             "teacher.weights", "evil.safetensors", "pickle"),
    cfg_case("teacher.weights=pickle_pt", teacher_model("{root}/evil.pt"), 2, "teacher.weights", "evil.pt", "pickle"),
    cfg_case("teacher.weights=torch_save_zip", teacher_model("{root}/torchsave.safetensors"), 2, "teacher.weights",
             "zip archive"),
    cfg_case("teacher.weights=truncated", teacher_model("{root}/truncated.safetensors"), 2, "teacher.weights",
             "truncated.safetensors"),
    cfg_case("teacher.weights=header_only", teacher_model("{root}/header_only.safetensors"), 2, "teacher.weights",
             "header_only.safetensors"),
    cfg_case("teacher.weights=empty", teacher_model("{root}/empty.safetensors"), 2, "teacher.weights",
             "empty.safetensors"),
    cfg_case("teacher.weights=garbage", teacher_model("{root}/garbage.safetensors"), 2, "teacher.weights",
             "garbage.safetensors"),
    cfg_case("teacher.weights=bad_header_json", teacher_model("{root}/bad_header.safetensors"), 2, "teacher.weights",
             "bad_header.safetensors"),
    cfg_case("teacher.weights=wrong_architecture", teacher_model("{root}/wide.safetensors"), 2, "teacher.weights",
             "does not fit"),
    cfg_case("teacher.weights=wrong_class_count", teacher_model("{root}/five.safetensors"), 2, "teacher.weights",
             "five.safetensors"),
    cfg_case("teacher.model.name=unknown", teacher(model={"name": "mlpp"}, weights="{root}/wide.safetensors"), 2,
             "teacher.model.name"),
    # init weights
    cfg_case("init=missing", [("init", "{root}/none.safetensors")], 2, "init", "none.safetensors"),
    cfg_case("init=directory_without_run", [("init", "{root}/unfinished_run")], 2, "init", "unfinished_run"),
    cfg_case("init=pickle", [("init", "{root}/evil.safetensors")], 2, "init", "pickle"),
    cfg_case("init=truncated", [("init", "{root}/truncated.safetensors")], 2, "init", "truncated.safetensors"),
    cfg_case("init=wrong_architecture", [("init", "{root}/wide.safetensors")], 2, "init", "does not fit"),
    cfg_case("init=bad_spec", [("init", "{root}/bad_spec.safetensors")], 2, "init", "bad_spec.safetensors"),
    # the config file itself
    Case("config=missing", lambda c: ["train", str(c.tmp / "nope.yaml"), "--out", str(c.out)], 2,
         ("nope.yaml", "does not exist")),
    Case("config=directory", lambda c: ["train", str(c.tmp), "--out", str(c.out)], 2, ("is a directory",)),
    Case("config=device", lambda c: ["train", "/dev/null", "--out", str(c.out)], 2, ("/dev/null", "regular file")),
    text_case("config=non_utf8", "optim: {lr: 0.1}\nmodel: {name: mlp}\n# caf\xe9\n".encode("latin-1"), 2,
              "c.yaml", "UTF-8", "0xe9"),
    text_case("config=utf16", "model: {name: mlp}\n".encode("utf-16"), 2, "c.yaml", "UTF-8"),
    text_case("config=invalid_yaml", "model: {name: mlp\ntrain: [1, 2\n", 2, "c.yaml", "not valid YAML"),
    text_case("config=tab_indent", "model:\n\tname: mlp\n", 2, "c.yaml", "not valid YAML"),
    text_case("config=top_level_list", "- model\n- train\n", 2, "c.yaml", "mapping"),
    text_case("config=top_level_scalar", "42\n", 2, "c.yaml", "mapping"),
    text_case("config=empty", "", 2, "model"),
    text_case("config=duplicate_top_level_key", "model: {name: mlp}\nmodel: {name: cnn}\n", 2, "c.yaml",
              "duplicate key 'model'"),
    text_case("config=duplicate_nested_key", "model: {name: mlp}\ntrain:\n  epochs: 1\n  epochs: 5\n", 2, "c.yaml",
              "duplicate key 'epochs'", "line 3"),
    text_case("config=alias_bomb", ALIAS_BOMB, 2, "c.yaml", "aliases", "refused"),
    text_case("config=recursive_anchor", "model: &m {name: mlp, more: *m}\n", 2, "c.yaml", "contains itself"),
    text_case("config=deep_nesting", "model: {name: mlp}\nx: " + "[" * 150 + "]" * 150 + "\n", 2, "c.yaml",
              "nested"),
    text_case("config=python_tag", "model: !!python/object/apply:os.system ['touch /tmp/kdlab-pwned']\n", 2,
              "c.yaml", "python/object"),
    text_case("config=control_characters", "model: {name: mlp}\x07\n", 2, "c.yaml", "not valid YAML"),
    text_case("config=non_string_model", "model: [mlp]\n", 2, "model"),
    # --set overrides
    set_case("set=without_equals", ["optim.lr"], 2, "optim.lr", "key.subkey=value"),
    set_case("set=empty_key", ["=3"], 2, "--set"),
    set_case("set=into_a_value", ["optim.lr.max=3"], 2, "lr", "not a section"),
    set_case("set=bool_for_number", ["optim.lr=true"], 2, "optim.lr"),
    set_case("set=inf", ["optim.weight_decay=.inf"], 2, "optim.weight_decay"),
    set_case("set=unknown_key", ["train.epochz=3"], 2, "train.epochz"),
    set_case("set=alias_bomb", ["model.x={" + ", ".join(line.split("#")[0].strip() for line in
                                                        ALIAS_BOMB.splitlines()[:12]) + "}"], 2, "--set", "aliases"),
    set_case("set=duplicate_key", ["model={name: mlp, name: cnn}"], 2, "duplicate key"),
]


# --out: what is already there must survive, and an --out that cannot be written is refused before anything else
def _file_at_out(ctx: Ctx) -> None:
    ctx.out.write_text("not a directory\n")


def _different_run_at_out(ctx: Ctx) -> None:
    assert main(["-q", "train", str(ctx.config(patched(("train.seed", 7)), "other.yaml")), "--out", str(ctx.out)]) == 0


def _garbage_config_at_out(ctx: Ctx) -> None:
    ctx.out.mkdir()
    (ctx.out / "config.yaml").write_bytes(b"\xff\xfe garbage: [")


def _garbage_summary_at_out(ctx: Ctx) -> None:
    ctx.out.mkdir()
    (ctx.out / "config.yaml").write_text(yaml.safe_dump(_parsed(BASE).to_dict(), sort_keys=False))
    (ctx.out / "summary.json").write_text("{ truncated")


def _user_files_at_out(ctx: Ctx) -> None:
    ctx.out.mkdir()
    (ctx.out / "notes.txt").write_text("my notes\n")


def _parsed(data: dict[str, Any]):  # noqa: ANN202
    from kdlab.config import parse_config

    return parse_config(copy.deepcopy(data))


CASES += [
    Case("out=is_a_file", lambda c: ["train", str(c.config(BASE)), "--out", str(c.out)], 2, ("{out}", "file"),
         prepare_out=_file_at_out),
    Case("out=parent_is_a_file", lambda c: ["train", str(c.config(BASE)), "--out", str(c.tmp / "f" / "run")], 2,
         ("f", "is a file"), prepare_out=lambda c: (c.tmp / "f").write_text("x")),
    Case("out=holds_a_different_run", lambda c: ["train", str(c.config(BASE)), "--out", str(c.out)], 2,
         ("{out}", "different config"), prepare_out=_different_run_at_out),
    Case("out=holds_garbage_config", lambda c: ["train", str(c.config(BASE)), "--out", str(c.out)], 2,
         ("{out}", "config.yaml"), prepare_out=_garbage_config_at_out),
    Case("out=holds_garbage_summary", lambda c: ["train", str(c.config(BASE)), "--out", str(c.out)], 2,
         ("summary.json",), prepare_out=_garbage_summary_at_out),
    Case("out=user_files_and_bad_config",
         lambda c: ["train", str(c.config(patched(("optim.lr", True)))), "--out", str(c.out)], 2, ("optim.lr",),
         prepare_out=_user_files_at_out),
    Case("out=user_files_and_missing_teacher",
         lambda c: ["distill", str(c.config(_fill(teacher(run="{root}/no-such-run"), c))), "--out", str(c.out)], 2,
         ("teacher.run",), prepare_out=_user_files_at_out),
]


# data: missing, corrupt, too small (exit 3 for data that cannot be had, 2 for a config that asks too much of it)
def _fashion(ctx: Ctx, data_dir: Path) -> list[str]:
    ctx.monkeypatch.setattr(fm, "SOURCES", [fm.SOURCES[0]])  # only the data directory: never the network or apt
    cfg = patched(("data", {"name": "fashion_mnist", "data_dir": str(data_dir), "val_size": 10}))
    return ["train", str(ctx.config(cfg)), "--out", str(ctx.out)]


def _fake_fashion(directory: Path, seed: int) -> dict[str, str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    sums = {}
    for stem, shape in (("train-images-idx3-ubyte", (30, 28, 28)), ("t10k-images-idx3-ubyte", (10, 28, 28))):
        path = write_idx(directory / f"{stem}.gz", rng.integers(0, 256, shape, dtype=np.uint8))
        sums[stem] = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    for stem, n in (("train-labels-idx1-ubyte", 30), ("t10k-labels-idx1-ubyte", 10)):
        path = write_idx(directory / f"{stem}.gz", np.arange(n, dtype=np.uint8) % 10)
        sums[stem] = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    return sums


def _corrupt_fashion(ctx: Ctx) -> list[str]:
    ctx.monkeypatch.setattr(fm, "EXPECTED_SHA256", _fake_fashion(ctx.tmp / "good", 0))
    _fake_fashion(ctx.tmp / "bad", 1)
    return _fashion(ctx, ctx.tmp / "bad")


def _truncated_fashion(ctx: Ctx) -> list[str]:
    ctx.monkeypatch.setattr(fm, "EXPECTED_SHA256", _fake_fashion(ctx.tmp / "cut", 0))
    path = ctx.tmp / "cut" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    return _fashion(ctx, ctx.tmp / "cut")


CASES += [
    Case("data=fashion_missing", lambda c: _fashion(c, c.tmp / "empty"), 3, ("Fashion-MNIST", "empty")),
    Case("data=fashion_corrupt", _corrupt_fashion, 3, ("checksum mismatch", "bad")),
    Case("data=fashion_truncated_gzip", _truncated_fashion, 3, ("train-images-idx3-ubyte.gz", "truncated")),
    Case("data=fashion_data_dir_is_a_file",
         lambda c: (c.tmp.joinpath("file").write_text("x"), _fashion(c, c.tmp / "file"))[1], 3, ("Fashion-MNIST",)),
    cfg_case("data=cifar_missing", [("data", {"name": "cifar10", "data_dir": "{tmp}/nothing",
                                            "options": {"download": False}})], 3, "nothing"),
    cfg_case("data=gaussian_mixture_bad_option", [("data", {"name": "gaussian_mixture", "options": {"sigma": -1}}),
                                                  ("model.name", "mlp")], 2, "sigma"),
    cfg_case("data=val_size_leaves_nothing", [("data.val_size", 1797)], 2, "val_size"),
]


# other commands
def _eval(path_key: str) -> Callable[[Ctx], list[str]]:
    return lambda c: ["eval", str(c.world.files[path_key]) if path_key in c.world.files else path_key]


CASES += [
    Case("eval=missing", lambda c: ["eval", str(c.tmp / "none.safetensors")], 2, ("none.safetensors",)),
    Case("eval=pickle", _eval("pickle_st"), 2, ("evil.safetensors", "pickle")),
    Case("eval=zip", _eval("zip_st"), 2, ("torchsave.safetensors", "zip")),
    Case("eval=truncated", _eval("truncated"), 2, ("truncated.safetensors",)),
    Case("eval=bad_spec", _eval("bad_spec"), 2, ("bad_spec.safetensors", "spec")),
    Case("eval=run_dir_without_weights", lambda c: ["eval", str(c.world.files["unfinished_run"])], 2,
         ("unfinished_run",)),
    Case("eval=unknown_dataset", lambda c: ["eval", str(c.world.files["good"]), "--data", "mnist"], 2, ("mnist",)),
    Case("eval=no_dataset_recorded", _eval("wide"), 2, ("--data",)),
    Case("eval=batch_size_zero", lambda c: ["eval", str(c.world.files["good"]), "--batch-size", "0"], 2,
         ("batch_size",)),
    Case("taps=unknown_model", lambda c: ["models", "taps", "resnet21"], 2, ("resnet21",)),
    Case("taps=pickle_weights", lambda c: ["models", "taps", str(c.world.files["pickle_st"])], 2, ("pickle",)),
    Case("taps=bad_in_shape", lambda c: ["models", "taps", "mlp", "--in-shape", "a,b"], 2, ("--in-shape",)),
    Case("data_fetch=unknown", lambda c: ["data", "fetch", "imagenet"], 2, ("imagenet",)),
    Case("study=unknown", lambda c: ["study", "capacityy", "--out", str(c.out)], 2, ("capacityy",)),
    Case("study=bad_set", lambda c: ["study", "capacity", "--out", str(c.out), "--set", "seeds=true"], 2,
         ("seeds",)),
    Case("study=seed_2^70", lambda c: ["study", "capacity", "--preset", "quick", "--out", str(c.out), "--set",
                                       f"seeds=[{2**70}]"], 2, ("seed", str(2**70))),
    Case("study=keep_epochs_after_last", lambda c: ["study", "capacity", "--preset", "quick", "--out", str(c.out),
                                                    "--set", "student.keep_epochs=[50]"], 2, ("keep_epochs", "1..")),
    Case("study=config_is_directory", lambda c: ["study", "capacity", str(c.tmp), "--out", str(c.out)], 2,
         ("is a directory",)),
    Case("tune=config_is_directory", lambda c: ["tune", str(c.tmp), "--trials", "2", "--out", str(c.out)], 2,
         ("is a directory",)),
    Case("tune=space_with_duplicate_key", lambda c: ["tune", str(c.config(BASE)), "--space",
                                                     str(c.config("kd: {T: [1]}\nkd: {T: [2]}\n", "space.yaml")),
                                                     "--trials", "2", "--out", str(c.out)], 2,
         ("space.yaml", "duplicate key")),
    Case("argv=unknown_command", lambda c: ["trian"], 2, ("trian",)),
    Case("argv=unknown_flag", lambda c: ["train", str(c.config(BASE)), "--outt", str(c.out)], 2, ("--outt",)),
]


# models and data from outside kdlab, logging sinks (issue 19)
def _without(package: str, case_argv: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[str]]:
    """The case's argv, with ``package`` made unimportable for the case (as if the optional extra were absent)."""
    def argv(ctx: Ctx) -> list[str]:
        ctx.monkeypatch.setitem(sys.modules, package, None)
        for name in [m for m in sys.modules if m.startswith(f"{package}.") or m == "torch.utils.tensorboard"]:
            ctx.monkeypatch.delitem(sys.modules, name, raising=False)
        return case_argv(ctx)
    return argv


def _pickle_pth(ctx: Ctx, zip_format: bool) -> list[str]:
    path = ctx.tmp / ("evil_zip.pth" if zip_format else "evil.pth")
    if zip_format:
        buf = io.BytesIO()
        torch.save({"0.weight": Evil(ctx.world.marker)}, buf)
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(pickle.dumps({"0.weight": Evil(ctx.world.marker)}))
    cfg = _fill(teacher_model(str(path)), ctx)
    return ["distill", str(ctx.config(cfg)), "--out", str(ctx.out)]


def _cfg_argv(edits: list[tuple[str, Any]]) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["train", str(ctx.config(_fill(patched(*edits), ctx))), "--out", str(ctx.out)]


HF_CONFIG = {"model_type": "vit", "image_size": 8, "num_channels": 1, "patch_size": 4, "hidden_size": 8,
             "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}

CASES += [
    cfg_case("model.source=unknown", [("model", {"source": "keras", "target": "x:y"})], 2, "model.source", "keras"),
    cfg_case("model.source=python_without_target", [("model", {"source": "python"})], 2, "model", "target"),
    cfg_case("model.target=not_importable", [("model", {"source": "python", "target": "no_such_pkg.nets:make"})],
             2, "model.target", "no_such_pkg.nets"),
    cfg_case("model.target=not_callable", [("model", {"source": "python", "target": "math:pi"})], 2,
             "model.target", "not a callable"),
    cfg_case("model.target=option_unknown", [("model", {"source": "python", "target": "torch.nn:Linear",
                                                        "in_featurs": 3})], 2, "in_featurs", "in_features"),
    cfg_case("model.target=not_a_module", [("model", {"source": "python", "target": "builtins:dict"})], 2,
             "model", "not a torch.nn.Module"),
    cfg_case("model.num_classes_for_python", [("model", {"source": "python", "target": "x:y", "num_classes": 3})],
             2, "num_classes"),
    cfg_case("model.huggingface=path_and_config", [("model", {"source": "huggingface", "path": "d",
                                                              "config": HF_CONFIG})], 2, "exactly one"),
    cfg_case("model.huggingface=unknown_key", [("model", {"source": "huggingface", "path": "d", "revison": "x"})],
             2, "revison"),
    cfg_case("model.huggingface=config_without_architecture", [("model", {"source": "huggingface",
                                                                          "config": HF_CONFIG})], 2, "architecture"),
    cfg_case("model.huggingface=num_labels", [("model", {"source": "huggingface", "architecture": "X",
                                                         "config": {**HF_CONFIG, "num_labels": 3}})], 2, "num_labels"),
    cfg_case("model.huggingface=path_not_a_checkpoint", [("model", {"source": "huggingface", "path": "{tmp}"})], 2,
             "model.path", "config.json"),
    Case("model.huggingface=transformers_missing",
         _without("transformers", _cfg_argv([("model", {"source": "huggingface", "path": "{tmp}"})])), 2,
         ("model.source=huggingface", "pip install 'kdlab[hf]'")),
    Case("model.timm=timm_missing", _without("timm", _cfg_argv([("model", {"source": "timm", "name": "resnet18"})])),
         2, ("model.source=timm", "pip install 'kdlab[timm]'")),
    Case("model.torchvision=torchvision_missing",
         _without("torchvision", _cfg_argv([("model", {"source": "torchvision", "name": "resnet18"})])), 2,
         ("model.source=torchvision", "pip install 'kdlab[torchvision]'")),
    cfg_case("teacher.model.source=unknown_key", teacher(model={"source": "timm", "name": "x"},
                                                         weights="w.pt") | {"teacher": {"model": {"source": "timmm"},
                                                                                        "weights": "w.pt"}},
             2, "teacher.model.source"),
    Case("teacher.weights=pickle_pth_refused", lambda c: _pickle_pth(c, zip_format=False), 2,
         ("teacher.weights", "evil.pth", "refused", "pickle")),
    Case("teacher.weights=pickle_in_torch_save_zip_refused", lambda c: _pickle_pth(c, zip_format=True), 2,
         ("teacher.weights", "evil_zip.pth", "refused", "pickle")),
    cfg_case("teacher.weights=unknown_suffix", teacher_model("{root}/teacher/config.yaml"), 2, "teacher.weights",
             "config.yaml", ".safetensors"),
    cfg_case("teacher.cache_topk=zero", teacher(run="{root}/teacher", cache_topk=0), 2, "teacher.cache_topk"),
    cfg_case("teacher.cache_topk=bool", teacher(run="{root}/teacher", cache_topk=True), 2, "teacher.cache_topk"),
    cfg_case("train.log=unknown", [("train.log", ["wandb"])], 2, "train.log", "tensorboard"),
    cfg_case("train.log=repeated", [("train.log", ["csv", "csv"])], 2, "train.log", "at most once"),
    cfg_case("train.log=text", [("train.log", "tensorboard")], 2, "train.log"),
    Case("train.log=tensorboard_missing", _without("tensorboard", _cfg_argv([("train.log", ["tensorboard"])])), 2,
         ("train.log: [tensorboard]", "pip install 'kdlab[tensorboard]'")),
    cfg_case("data.streaming=not_a_streaming_source", [("data.streaming", True)], 2, "data.streaming", "image_folder"),
    cfg_case("data.streaming=text", [("data.streaming", "maybe")], 2, "data.streaming"),
    cfg_case("data.num_workers=negative", [("data.num_workers", -1)], 2, "data.num_workers"),
    cfg_case("data.image_folder=missing", [("data", {"name": "image_folder", "data_dir": "{tmp}/nothing",
                                                     "val_size": 0})], 3, "nothing"),
    cfg_case("data.image_folder=without_data_dir", [("data", {"name": "image_folder", "val_size": 0})], 2,
             "data.data_dir"),
    cfg_case("data.image_folder=bad_channels", [("data", {"name": "image_folder", "data_dir": "{tmp}",
                                                          "options": {"channels": 2}})], 2, "channels"),
]


def _snapshot(path: Path) -> Any:
    """Everything a command could change under ``path``: names, types, modes and file contents."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_file():
        return ("file", path.stat().st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return ("dir", {p.name: _snapshot(p) for p in sorted(path.iterdir())})


def run_case(case: Case, ctx: Ctx, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    if case.prepare_out is not None:
        case.prepare_out(ctx)
    argv = case.argv(ctx)
    before = {p: _snapshot(p) for p in (ctx.out, ctx.tmp / "f")}
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert {p: _snapshot(p) for p in before} == before, f"{case.id} changed --out"
    return code, err


def test_corpus_is_big_enough():
    assert len(CASES) >= 124, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    ctx = Ctx(world, tmp_path, tmp_path / "out", monkeypatch)
    code, err = run_case(case, ctx, capsys)
    assert code == case.code, err
    assert "Traceback" not in err
    names = {"out": ctx.out, "tmp": ctx.tmp, "root": world.root}
    for mention in case.mentions:
        assert mention.format(**names) in err, (mention, err)
    if not case.id.startswith("argv="):
        assert err.startswith("kdlab: "), err
    assert not world.marker.exists(), "a pickle payload ran"


def test_corrected_rerun_into_the_same_out_works(world: World, tmp_path: Path, capsys) -> None:
    """The issue's trap: a failed distill (missing teacher) used to write config.yaml into --out, so the corrected
    command was refused as 'a different config'."""
    out = tmp_path / "out"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(_fill(teacher(run="{root}/no-such-run"), Ctx(world, tmp_path, out, None))))
    assert main(["-q", "distill", str(broken), "--out", str(out)]) == 2
    assert not out.exists()
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(teacher(run=str(world.teacher_run))))
    assert main(["-q", "distill", str(fixed), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["teacher"]["run"] == str(world.teacher_run)


def test_out_in_use_is_refused_naming_the_holder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    with acquire_run_lock(out, wait=False):
        before = _snapshot(out)
        assert main(["-q", "train", str(cfg), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "--wait" in err and str(out) in err
        assert _snapshot(out) == before
    assert main(["-q", "train", str(cfg), "--out", str(out)]) == 0


def test_alias_bomb_is_refused_in_milliseconds_and_little_memory() -> None:
    assert len(ALIAS_BOMB.encode()) == 514
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        parse_yaml(ALIAS_BOMB, "bomb")
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 0.1 and peak < 1_000_000, (seconds, peak)


def test_yaml_anchors_within_bounds_still_work() -> None:
    data = parse_yaml("base: &b {lr: 0.1, momentum: 0.9}\noptim:\n  <<: *b\n  lr: 0.2\nlist: [*b, *b]\n")
    assert data["optim"] == {"lr": 0.2, "momentum": 0.9} and data["list"] == [{"lr": 0.1, "momentum": 0.9}] * 2


# a handful of cases as real processes: the exit code and stderr a shell sees, with no traceback
PROCESS_CASES = ["config=non_utf8", "config=directory", "teacher.weights=pickle_renamed_safetensors",
                 "config=alias_bomb", "eval=truncated"]


def test_bad_inputs_in_real_processes(world: World, tmp_path: Path, monkeypatch) -> None:
    """The shell's view, all at once (interpreter start-up dominates): exit code, one stderr line, no traceback."""
    started = time.perf_counter()
    procs = {}
    for case_id in PROCESS_CASES:
        case = next(c for c in CASES if c.id == case_id)
        ctx = Ctx(world, tmp_path / case_id, tmp_path / case_id / "out", monkeypatch)
        ctx.tmp.mkdir()
        procs[case_id] = (case, ctx, subprocess.Popen([sys.executable, "-m", "kdlab.cli", *case.argv(ctx)],
                                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for case_id, (case, ctx, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == case.code, (case_id, err)
        assert "Traceback" not in err and err.startswith("kdlab: ") and err.count("\n") == 1, (case_id, err)
        assert not ctx.out.exists()
    assert not world.marker.exists()
    assert time.perf_counter() - started < 120
