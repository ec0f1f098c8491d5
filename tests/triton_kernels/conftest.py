"""Fixtures for the kernel tests: fresh random inputs each run, the interpreter backend.

Every test draws a new seed; it is printed, so a failing test's captured output names
the seed that reproduces it (``torch.Generator().manual_seed(seed)``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch
from vlrl.triton_kernels import HAS_TRITON, force_backend


@pytest.fixture
def rng() -> torch.Generator:
    """A generator seeded with a fresh seed (printed for reproduction)."""
    seed = random.SystemRandom().randrange(2**31)
    print(f"kernel test seed = {seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def interpreter() -> Iterator[None]:
    """Run the enclosed kernel calls in the Triton interpreter on CPU tensors."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed here")
    with force_backend("interpreter"):
        yield


def _random_segments(
    batch: int, time: int, rng: torch.Generator, all_ignore_rows: tuple[int, ...] = ()
) -> torch.Tensor:
    """Ragged [B, T] int8 segment ids: ignored prompt, thought run, action run, ignored pad.

    Each row gets its own random lengths (some rows without thoughts); rows listed in
    ``all_ignore_rows`` are all IGNORE.
    """
    segments = torch.zeros((batch, time), dtype=torch.int8)
    for row in range(batch):
        if row in all_ignore_rows:
            continue
        prompt = int(torch.randint(0, time // 2, (1,), generator=rng))
        action = int(torch.randint(1, max(2, (time - prompt) // 2 + 1), (1,), generator=rng))
        thought = int(torch.randint(0, time - prompt - action + 1, (1,), generator=rng))
        segments[row, prompt : prompt + thought] = 1
        segments[row, prompt + thought : prompt + thought + action] = 2
    return segments


def _random_targets(
    segments: torch.Tensor, vocab: int, rng: torch.Generator, ignore_value: int = -100
) -> torch.Tensor:
    """Targets in [0, vocab) on active tokens and ``ignore_value`` (out of range) elsewhere."""
    targets = torch.randint(0, vocab, tuple(segments.shape), generator=rng)
    return torch.where(segments != 0, targets, torch.full_like(targets, ignore_value))


@pytest.fixture
def random_segments():
    """The ragged segment-id maker (a fixture, so test modules need no conftest import)."""
    return _random_segments


@pytest.fixture
def random_targets():
    """The target maker matching :func:`_random_segments`."""
    return _random_targets
