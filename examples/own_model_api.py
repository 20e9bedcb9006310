"""Distil with your own nn.Module and your own DataLoader through kdlab's Python API.

Nothing here is a kdlab model or a kdlab loader: a teacher and a student written as plain PyTorch modules, batches
from a torch DataLoader over a map-style Dataset that yields (image, label, index). kdlab's ``fit`` trains any
objective on any iterable of batches (resumable: rerun with the same --out-dir and it continues), and the
``Distiller`` adds KD to the student. The index lets the Distiller read the teacher's cached outputs instead of
running the teacher on every batch.

    python examples/own_model_api.py --out-dir runs/examples/api [--epochs 5] [--train-subset 5000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdlab.config import OptimConfig, ScheduleConfig, TrainConfig
from kdlab.data import load_dataset
from kdlab.distill import Distiller, cached_teacher_logits
from kdlab.losses import build
from kdlab.train import evaluate, fit


class SmallConvNet(nn.Module):
    """The user's own model: any module that maps a batch of images to logits."""

    def __init__(self, width: int, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class IndexedImages(Dataset):
    """The user's own dataset: item i is (image, label, i); the index keys the teacher-output cache."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="runs/examples/api")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-subset", type=int, default=5000)
    args = parser.parse_args()
    out = Path(args.out_dir)

    data = load_dataset("fashion_mnist", val_size=5000, train_subset=args.train_subset)
    train = DataLoader(IndexedImages(data.train.x, data.train.y), batch_size=128, shuffle=True)
    val = DataLoader(IndexedImages(data.val.x, data.val.y), batch_size=1024)
    test = DataLoader(IndexedImages(data.test.x, data.test.y), batch_size=1024)
    settings = dict(train=TrainConfig(epochs=args.epochs, batch_size=128, progress=False),
                    optim=OptimConfig(name="sgd", lr=0.05), schedule=ScheduleConfig(name="cosine"))

    # 1. the teacher: the user's module trained with plain cross-entropy (a Distiller without a teacher)
    torch.manual_seed(0)
    teacher = SmallConvNet(width=32)
    fit(Distiller(teacher, build("ce")), train, val, out / "teacher", **settings)
    print(f"teacher test accuracy {evaluate(teacher, test)['accuracy']:.4f}")

    # 2. the student: a narrower module of the user's, distilled with KD from the teacher's cached outputs
    logits = cached_teacher_logits(teacher, data.train.x, data.train.fingerprint())
    torch.manual_seed(0)
    student = SmallConvNet(width=8)
    distiller = Distiller(student, build("kd", temperature=4.0, alpha=0.9), teacher=teacher, teacher_logits=logits)
    result = fit(distiller, train, val, out / "student", **settings)
    print(f"student test accuracy {evaluate(student, test)['accuracy']:.4f}  (best epoch {result['best_epoch']}, "
          f"last epoch's parts: { {k: round(v, 4) for k, v in result['history'][-1].items() if k.startswith('train_')} })")


if __name__ == "__main__":
    main()
