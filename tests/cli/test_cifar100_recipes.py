"""configs/cifar100/: the field's standard teacher/student pairs with KD, DKD, DIST and ATS. Each config trains one
step as shipped (only the data directory, the length and the batch size overridden) on tiny CIFAR-100 binary files
written here: teachers first, then every distillation config from its teacher's run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdlab.config import load_config
from kdlab.recipe import run

ROOT = Path(__file__).resolve().parents[2] / "configs" / "cifar100"
TEACHERS = sorted((ROOT / "teachers").glob("*.yaml"))
PAIRS = sorted(ROOT.glob("*.yaml"))


def write_tiny_cifar100(root: Path, n_train: int = 8, n_test: int = 4) -> Path:
    """CIFAR-100 binary files (coarse label, fine label, 3072 pixel bytes per record) with random content."""
    rng = np.random.default_rng(0)
    directory = root / "cifar-100-binary"
    directory.mkdir(parents=True)
    (directory / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)))
    (directory / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)))
    for part, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        labels = np.stack([fine // 5, fine], axis=1).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        (directory / f"{part}.bin").write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    return root


def _tiny(path: Path, data_dir: Path, *extra: str):
    return load_config(path, [f"data.data_dir={data_dir}", "train.epochs=1", "train.batch_size=8",
                              "train.eval_batch_size=8", "schedule.milestones=[]", "train.progress=false", *extra])


def test_the_recipes_cover_every_pair_and_method():
    names = {p.stem for p in PAIRS}
    pairs = ["resnet56_resnet20", "resnet110_resnet32", "resnet32x4_resnet8x4", "wrn_40_2_wrn_16_2",
             "wrn_40_2_wrn_40_1"]
    assert names == {f"{pair}_{method}" for pair in pairs for method in ("kd", "dkd", "dist", "ats")}
    for path in PAIRS:  # every file states its published numbers or says it could not verify one
        header = path.read_text().split("model:")[0]
        assert "Published top-1" in header and ("Table 1" in header or "not verified" in header), path.name


@pytest.mark.slow
def test_every_recipe_trains_one_step(tmp_path):
    data_dir = write_tiny_cifar100(tmp_path / "data")
    runs = tmp_path / "runs"
    for path in TEACHERS:
        summary = run(_tiny(path, data_dir), runs / path.stem, teacher_cache_dir=tmp_path / "cache")
        assert summary["epochs"] == 1 and np.isfinite(summary["test_loss"])
    for path in PAIRS:
        cfg = load_config(path)
        teacher_name = Path(cfg.teacher.run).name
        summary = run(_tiny(path, data_dir, f"teacher.run={runs / teacher_name}"), runs / path.stem,
                      teacher_cache_dir=tmp_path / "cache")
        assert summary["loss"]["name"] == cfg.loss.name and np.isfinite(summary["test_loss"]), path.name
