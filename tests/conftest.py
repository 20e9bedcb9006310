"""Shared fixtures: an isolated teacher-output cache and a tiny, fast run config on bundled digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kdlab.cli import main


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDLAB_CACHE", str(tmp_path_factory.mktemp("teacher_cache")))


@pytest.fixture
def tiny_run() -> dict[str, Any]:
    """A run config dict on scikit-learn's digits: an MLP with dropout, 4 epochs, a few seconds."""
    return {
        "data": {"name": "digits", "val_size": 200, "seed": 0},
        "model": {"name": "mlp", "width": 32, "depth": 1, "dropout": 0.2},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "train": {"epochs": 4, "batch_size": 64, "seed": 3, "progress": False},
    }


@pytest.fixture
def assert_report_rebuilds():
    """Check that ``kdlab report OUT`` writes ``files`` (deleted first) back byte for byte from results.json."""
    def check(out: Path, files: list[str]) -> None:
        before = {name: (out / name).read_bytes() for name in files}
        for name in before:
            (out / name).unlink()
        assert main(["report", str(out)]) == 0
        assert {name: (out / name).read_bytes() for name in before} == before
    return check


@pytest.fixture
def verdict_intervals():
    """For a claim's rule, hand-made (estimate, low, high) triples whose verdict is True, False and None."""
    def make(rule) -> dict[bool | None, tuple[float, float, float]]:
        t, w = rule.threshold, 0.01
        if rule.op == "within":
            return {True: (0.0, -t / 2, t / 2), False: (t + 2 * w, t + w, t + 3 * w), None: (t, t / 2, 2 * t)}
        above, below = (t + 2 * w, t + w, t + 3 * w), (t - 2 * w, t - 3 * w, t - w)
        straddle = (t, t - w, t + w)
        return {True: above if rule.op in (">", ">=") else below,
                False: below if rule.op in (">", ">=") else above, None: straddle}
    return make


@pytest.fixture
def verdict_values():
    """For a rule on a mean over two paired values, two values whose 95% t interval gives the verdict asked for
    (identical values: a zero-width interval clear of the threshold; a wide spread: it straddles)."""
    def make(rule, expected: bool | None, offset: float = 0.0) -> list[float]:
        t = rule.threshold
        if expected is None:
            return [offset + t - 0.05, offset + t + 0.05]
        up = (rule.op in (">", ">=")) == expected
        v = offset + t + (0.02 if up else -0.02)
        return [v, v]
    return make


def write_image_folder(root, classes: int = 3, per_class: int = 6, test_per_class: int = 2, size=(8, 8),
                       channels: int = 1, seed: int = 0, suffix: str = ".png"):
    """ROOT/train/<class>/*.png and ROOT/test/<class>/*.png: images whose mean brightness depends on the class (so a
    model can learn them), PNG (lossless) so decoded pixels equal the written ones; returns the root."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, n in (("train", per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / part / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = 40 + 80 * c
                pixels = np.clip(rng.normal(base, 30, (*size, channels)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, "L" if channels == 1 else "RGB")
                image.save(folder / f"img{i:03d}{suffix}")
    return root


@pytest.fixture
def image_folder(tmp_path):
    """A 3-class grayscale 8x8 image folder (18 training, 6 test images)."""
    return write_image_folder(tmp_path / "images")
