"""GAE: the Triton kernel (interpreter on CPU) and the vectorised reference vs a plain loop.

Tolerances: float32 throughout; kernel vs reference atol 1e-5 / rtol 1e-5 (the tiled scan
sums the same products in another order); reference vs the float64 Python loop
atol 1e-4 / rtol 1e-5 (float32 rounding over T steps).
"""

from __future__ import annotations

import importlib

import pytest
import torch
from vlrl.triton_kernels import gae, gae_reference

gae_module = importlib.import_module("vlrl.triton_kernels.gae")


def python_loop_gae(rewards, values, dones, gamma, lam):
    """The reversed ``lastgaelam`` loop on plain Python floats, one env column at a time."""
    steps, envs = len(rewards), len(rewards[0])
    advantages = [[0.0] * envs for _ in range(steps)]
    for env in range(envs):
        lastgaelam = 0.0
        for t in reversed(range(steps)):
            next_non_terminal = 1.0 - float(dones[t][env])
            delta = rewards[t][env] + gamma * values[t + 1][env] * next_non_terminal
            delta -= values[t][env]
            lastgaelam = delta + gamma * lam * next_non_terminal * lastgaelam
            advantages[t][env] = lastgaelam
    returns = [[advantages[t][e] + values[t][e] for e in range(envs)] for t in range(steps)]
    return advantages, returns


def _rollout(steps: int, envs: int, rng: torch.Generator, done_rate: float = 0.2):
    rewards = torch.randn(steps, envs, generator=rng)
    values = torch.randn(steps + 1, envs, generator=rng)
    dones = torch.rand(steps, envs, generator=rng) < done_rate
    return rewards, values, dones


@pytest.mark.parametrize("shape", [(9, 5), (1, 3), (8, 4), (13, 1)])
def test_reference_matches_python_loop(shape, rng):
    rewards, values, dones = _rollout(*shape, rng)
    advantages, returns = gae_reference(rewards, values, dones, 0.9, 0.95)
    expected_adv, expected_ret = python_loop_gae(
        rewards.double().tolist(), values.double().tolist(), dones.tolist(), 0.9, 0.95
    )
    torch.testing.assert_close(
        advantages.double(), torch.tensor(expected_adv, dtype=torch.float64), atol=1e-4, rtol=1e-5
    )
    torch.testing.assert_close(
        returns.double(), torch.tensor(expected_ret, dtype=torch.float64), atol=1e-4, rtol=1e-5
    )


@pytest.mark.parametrize("shape", [(9, 5), (1, 3), (8, 4), (13, 1), (4, 9)])
@pytest.mark.parametrize("done_dtype", [torch.bool, torch.float32])
def test_kernel_matches_reference(shape, done_dtype, rng, interpreter):
    # Shapes: T and N below, at and not multiples of the interpreter's 4 x 4 tiles.
    rewards, values, dones = _rollout(*shape, rng)
    dones = dones.to(done_dtype)
    gamma = float(torch.empty(()).uniform_(0.8, 1.0, generator=rng))
    lam = float(torch.empty(()).uniform_(0.8, 1.0, generator=rng))
    advantages, returns = gae(rewards, values, dones, gamma, lam)
    expected_adv, expected_ret = gae_reference(rewards, values, dones, gamma, lam)
    torch.testing.assert_close(advantages, expected_adv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(returns, expected_ret, atol=1e-5, rtol=1e-5)
    expected_loop, _ = python_loop_gae(
        rewards.double().tolist(), values.double().tolist(), dones.tolist(), gamma, lam
    )
    torch.testing.assert_close(
        advantages.double(), torch.tensor(expected_loop, dtype=torch.float64), atol=1e-4, rtol=1e-5
    )


def test_kernel_uses_the_scan(rng, interpreter, monkeypatch):
    """Several tiles per column (T = 11 with 4-step tiles): the carry between tiles is used."""
    monkeypatch.setattr(gae_module, "INTERPRETER_BLOCK_T", 4)
    rewards, values, dones = _rollout(11, 6, rng, done_rate=0.0)
    advantages, _ = gae(rewards, values, dones, 0.99, 0.95)
    expected, _ = gae_reference(rewards, values, dones, 0.99, 0.95)
    torch.testing.assert_close(advantages, expected, atol=1e-5, rtol=1e-5)


def test_hand_example():
    """T = 3, one env, episode ends at step 1; gamma = 0.5, lam = 1."""
    rewards = torch.tensor([[1.0], [2.0], [4.0]])
    values = torch.tensor([[0.0], [1.0], [0.0], [8.0]])
    dones = torch.tensor([[False], [True], [False]])
    # t=2: delta = 4 + 0.5 * 8 - 0 = 8; A = 8
    # t=1: done, delta = 2 - 1 = 1; A = 1 (no carry across the boundary)
    # t=0: delta = 1 + 0.5 * 1 - 0 = 1.5; A = 1.5 + 0.5 * 1 = 2
    advantages, returns = gae_reference(rewards, values, dones, 0.5, 1.0)
    assert advantages[:, 0].tolist() == [2.0, 1.0, 8.0]
    assert returns[:, 0].tolist() == [2.0, 2.0, 8.0]


def test_hand_example_kernel(interpreter):
    rewards = torch.tensor([[1.0], [2.0], [4.0]])
    values = torch.tensor([[0.0], [1.0], [0.0], [8.0]])
    dones = torch.tensor([[False], [True], [False]])
    advantages, returns = gae(rewards, values, dones, 0.5, 1.0)
    assert advantages[:, 0].tolist() == [2.0, 1.0, 8.0]
    assert returns[:, 0].tolist() == [2.0, 2.0, 8.0]


def test_shape_errors():
    with pytest.raises(ValueError, match=r"values must be \[T \+ 1, N\]"):
        gae(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), 0.9, 0.95)
    with pytest.raises(ValueError, match=r"dones must be \[T, N\]"):
        gae(torch.zeros(4, 2), torch.zeros(5, 2), torch.zeros(4, 3), 0.9, 0.95)
    with pytest.raises(ValueError, match=r"rewards must be \[T, N\]"):
        gae(torch.zeros(4), torch.zeros(5), torch.zeros(4), 0.9, 0.95)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_kernel_on_cuda(rng):
    """Compiled Triton at training size (CPU sibling: test_kernel_matches_reference)."""
    rewards, values, dones = (x.cuda() for x in _rollout(512, 4096, rng))
    advantages, returns = gae(rewards, values, dones, 0.9, 0.95)
    expected_adv, expected_ret = gae_reference(rewards, values, dones, 0.9, 0.95)
    torch.testing.assert_close(advantages, expected_adv, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(returns, expected_ret, atol=1e-4, rtol=1e-5)
