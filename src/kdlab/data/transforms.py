"""Batch augmentations in torch, driven by an explicit ``torch.Generator`` (reproducible and resumable).

Every transform maps ``x [N,C,H,W]`` to a tensor of the same shape and has ``spec()``, a JSON-able dict
that identifies it (used to key caches of augmented teacher outputs).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError


class BatchTransform(Protocol):
    """What the loader needs from an augmentation."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def spec(self) -> dict[str, Any]:
        """A JSON-able dict that identifies the transform and its parameters."""
        ...


def _check_images(x: torch.Tensor, who: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{who} expects images [N,C,H,W]; got x of shape {tuple(x.shape)}")


class RandomCropPad:
    """Pad each side by ``padding`` with ``fill``, then crop back to H x W at a random offset per sample.

    out[n, :, i, j] = padded[n, :, i + dy_n, j + dx_n] with dy_n, dx_n ~ Uniform{0..2*padding} (the
    CIFAR augmentation of He et al. 2016, "Deep Residual Learning"). ``fill`` is in the units of ``x``:
    on normalised batches 0 is the training-set mean colour.
    """

    def __init__(self, padding: int, fill: float = 0.0) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ConfigError(f"padding={padding!r} is invalid; allowed: an int >= 0")
        self.padding, self.fill = padding, float(fill)

    def sample_offsets(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw the per-sample crop offsets ``[n, 2]`` (dy, dx), each in 0..2*padding."""
        return torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)

    def crop(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Pad ``x`` and crop sample n at ``offsets[n] = (dy, dx)``, with one gather for the whole batch."""
        _check_images(x, "RandomCropPad")
        n, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p), value=self.fill)
        offsets = offsets.to(x.device)
        rows = (offsets[:, 0:1] + torch.arange(h, device=x.device))[:, None, :, None]  # [N,1,H,1]
        cols = (offsets[:, 1:2] + torch.arange(w, device=x.device))[:, None, None, :]  # [N,1,1,W]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, chan, rows, cols]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.padding == 0:
            return x
        return self.crop(x, self.sample_offsets(x.shape[0], generator))

    def spec(self) -> dict[str, Any]:
        """A JSON-able dict that identifies the transform and its parameters."""
        return {"name": "random_crop_pad", "padding": self.padding, "fill": self.fill}


class HorizontalFlip:
    """Mirror each image left-right independently with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p={p!r} is invalid; allowed: a probability in [0, 1]")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_images(x, "HorizontalFlip")
        flip = torch.rand(x.shape[0], generator=generator) < self.p
        return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)

    def spec(self) -> dict[str, Any]:
        """A JSON-able dict that identifies the transform and its parameters."""
        return {"name": "hflip", "p": self.p}


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator)
        return x

    def spec(self) -> dict[str, Any]:
        """A JSON-able dict that identifies the transform and its parameters."""
        return {"name": "compose", "transforms": [t.spec() for t in self.transforms]}


def build_augment(crop_padding: int = 0, hflip: bool = False) -> Compose | None:
    """The standard image augmentation: random crop with ``crop_padding``, then an optional flip; None if neither."""
    transforms: list[BatchTransform] = []
    if crop_padding:
        transforms.append(RandomCropPad(crop_padding))
    if hflip:
        transforms.append(HorizontalFlip(0.5))
    return Compose(transforms) if transforms else None


def channel_mean_std(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population standard deviation over every axis except dim 1.

    mean_c = sum x_c / M,  std_c = sqrt(sum (x_c - mean_c)^2 / M): two passes in float64 over chunks of
    ``chunk`` samples, so a large uint8-sized dataset is never copied whole to float64. A channel with
    zero spread gets std 1 so normalising it cannot divide by zero.
    """
    if x.ndim < 2:
        raise ValueError(f"x must have a channel axis at dim 1; got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("cannot compute channel statistics of an empty batch")
    dims = [d for d in range(x.ndim) if d != 1]
    per_channel = x.numel() // x.shape[1]
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    for part in x.split(chunk):
        total += part.to(torch.float64).sum(dim=dims)
    mean = total / per_channel
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    sq = torch.zeros_like(total)
    for part in x.split(chunk):
        sq += (part.to(torch.float64) - mean.reshape(shape)).pow(2).sum(dim=dims)
    std = (sq / per_channel).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel standardisation (x - mean_c) / std_c along dim 1; returns a new float32 tensor."""
    c = x.shape[1] if x.ndim >= 2 else 0
    if len(mean) != c or len(std) != c:
        raise ValueError(
            f"mean/std have {len(mean)}/{len(std)} entries; allowed: one per channel ({c}) of x {tuple(x.shape)}"
        )
    if any(not s > 0 for s in std):
        raise ValueError(f"std={tuple(std)} is invalid; allowed: positive in every channel")
    shape = (1, c) + (1,) * (x.ndim - 2)
    mean_t = torch.tensor(mean, dtype=torch.float32).reshape(shape)
    std_t = torch.tensor(std, dtype=torch.float32).reshape(shape)
    return (x.to(torch.float32) - mean_t) / std_t
