"""Independent, reproducible random streams derived from one user seed."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """Return a 63-bit seed that is a pure function of ``parts`` (e.g. ``(seed, "val")`` or ``(seed, epoch)``).

    Hashing (BLAKE2b of the parts' ``repr``) instead of arithmetic such as ``seed * 1000003 + epoch``
    keeps streams for different purposes apart: ``(1, 0)`` and ``(0, 1000003)`` cannot collide.
    """
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def generator_for(*parts: object) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded with ``derive_seed(*parts)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
