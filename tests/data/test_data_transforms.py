import json

import pytest
import torch

from kdlab.data import Compose, HorizontalFlip, RandomCropPad, build_augment, normalize
from kdlab.data.transforms import channel_mean_std
from kdlab.errors import ConfigError


def images(n=6, c=2, h=5, w=7):
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).reshape(n, c, h, w)


def test_crop_pad_keeps_shape_and_moves_each_sample_by_its_offset():
    x = images()
    crop = RandomCropPad(padding=2, fill=-1.0)
    offsets = crop.sample_offsets(len(x), torch.Generator().manual_seed(7))
    out = crop(x, torch.Generator().manual_seed(7))
    assert out.shape == x.shape
    n, c, h, w = x.shape
    for s in range(n):
        dy, dx = offsets[s].tolist()
        for i in range(h):
            for j in range(w):
                si, sj = i + dy - 2, j + dx - 2  # where this output pixel comes from in the input
                inside = 0 <= si < h and 0 <= sj < w
                expected = x[s, :, si, sj] if inside else torch.full((c,), -1.0)
                assert torch.equal(out[s, :, i, j], expected), (s, i, j)


def test_crop_at_offset_zero_shifts_down_right_by_the_padding():
    x = images(n=1, c=1, h=4, w=4)
    out = RandomCropPad(padding=1).crop(x, torch.tensor([[0, 0]]))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 1:, 1:] = x[0, 0, :3, :3]
    assert torch.equal(out, expected)
    centred = RandomCropPad(padding=1).crop(x, torch.tensor([[1, 1]]))
    assert torch.equal(centred, x)


def test_crop_offsets_differ_between_samples():
    offsets = RandomCropPad(4).sample_offsets(64, torch.Generator().manual_seed(0))
    assert offsets.min() == 0 and offsets.max() == 8
    assert len({tuple(o) for o in offsets.tolist()}) > 20


def test_crop_padding_zero_is_identity_and_bad_padding_rejected():
    x = images()
    assert torch.equal(RandomCropPad(0)(x, torch.Generator()), x)
    with pytest.raises(ConfigError, match="padding=-1"):
        RandomCropPad(-1)


def test_hflip():
    x = images()
    assert torch.equal(HorizontalFlip(p=1.0)(x, torch.Generator()), x.flip(-1))
    assert torch.equal(HorizontalFlip(p=1.0)(x, torch.Generator())[0, 0, 0], x[0, 0, 0].flip(0))
    assert torch.equal(HorizontalFlip(p=0.0)(x, torch.Generator()), x)
    out = HorizontalFlip(p=0.5)(images(n=64), torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, images(n=64))]
    kept = [torch.equal(o, xi) for o, xi in zip(out, images(n=64))]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_same_generator_seed_same_augmentation():
    aug = build_augment(crop_padding=2, hflip=True)
    x = images(n=16)
    a = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(4)))


def test_specs_and_build_augment():
    assert build_augment() is None
    aug = build_augment(crop_padding=4, hflip=True)
    assert isinstance(aug, Compose)
    spec = aug.spec()
    assert spec == {"name": "compose", "transforms": [
        {"name": "random_crop_pad", "padding": 4, "fill": 0.0}, {"name": "hflip", "p": 0.5}]}
    assert json.loads(json.dumps(spec)) == spec
    assert build_augment(hflip=True).spec()["transforms"] == [{"name": "hflip", "p": 0.5}]


def test_normalize_per_channel():
    x = torch.tensor([[[[1.0, 3.0]], [[10.0, 30.0]]]])  # [1, 2, 1, 2]
    out = normalize(x, mean=(2.0, 20.0), std=(1.0, 10.0))
    assert out.tolist() == [[[[-1.0, 1.0]], [[-1.0, 1.0]]]]
    with pytest.raises(ValueError, match="one per channel"):
        normalize(x, mean=(0.0,), std=(1.0,))


def test_channel_mean_std_matches_direct_computation():
    x = torch.randn(50, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    mean, std = channel_mean_std(x, chunk=7)
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), x.double().mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), x.double().std(dim=(0, 2, 3), correction=0))
    assert channel_mean_std(torch.ones(4, 1, 2, 2))[1] == (1.0,)  # constant channel: std 1, not 0
