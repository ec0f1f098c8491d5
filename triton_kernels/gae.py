"""Generalised advantage estimation over a [T, N] rollout (time major, one column per env).

Recurrence (dones[t] = 1 when the episode ended at step t, so values[t + 1] is not used
across that boundary):

    delta_t = rewards[t] + gamma * values[t + 1] * (1 - dones[t]) - values[t]
    A_t     = delta_t + gamma * lam * (1 - dones[t]) * A_{t + 1},   A_T = 0
    returns = A + values[:T]

Triton: one program per block of env columns walks time backwards a tile of BLOCK_T
steps at a time. Inside a tile the recurrence ``A_t = delta_t + c_t * A_{t+1}`` is a
composition of affine maps, which is associative, so ``tl.associative_scan`` solves the
tile in parallel; the tile's earliest value is the carry into the tile before it. Loading a whole
tile at once keeps many loads in flight, where a step-by-step loop would wait on memory
latency T times.
"""

from __future__ import annotations

import torch

from ._dispatch import HAS_TRITON, Backend, cdiv, choose_backend, launch_options, lazy_jit, tl

# GPU tile: 32 time steps x 32 envs = 1024 values per load (4 warps, 8 per thread);
# N = 4096 envs gives 128 programs, about one per SM on an H100. Untuned: no GPU yet.
GPU_BLOCK_T = 32
GPU_BLOCK_N = 32
# Interpreter: the scan with a user combine function runs element by element in Python.
INTERPRETER_BLOCK_T = 4
INTERPRETER_BLOCK_N = 4


def _affine_compose_py(later_offset, later_scale, earlier_offset, earlier_scale):
    """Scan combine: the map of the later steps (left, already scanned) and an earlier step.

    Each step is the affine map ``x -> offset + scale * x`` taking A_{t+1} to A_t; the
    result ``x -> earlier_offset + earlier_scale * (later_offset + later_scale * x)`` is the
    earlier map applied after the later ones.
    """
    return earlier_offset + earlier_scale * later_offset, earlier_scale * later_scale


if HAS_TRITON:
    from triton.runtime.jit import JITFunction

    # Built as a compiled-mode function on purpose: the interpreter calls its ``.fn``, so
    # one object serves both backends whatever TRITON_INTERPRET said at import time.
    _affine_compose = JITFunction(_affine_compose_py)


@lazy_jit
def _gae_kernel(
    rewards_ptr,
    values_ptr,
    dones_ptr,
    advantages_ptr,
    returns_ptr,
    T,
    N,
    gamma,
    gae_lambda,
    BLOCK_T: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """rewards, dones, advantages, returns: [T, N] fp32 contiguous; values [T + 1, N]."""
    pid = tl.program_id(0).to(tl.int64)
    cols = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    steps = tl.arange(0, BLOCK_T)
    carry = tl.zeros([BLOCK_N], dtype=tl.float32)
    n_tiles = tl.cdiv(T, BLOCK_T)
    for tile in range(0, n_tiles):
        # Tile rows run backwards in time, so a plain (forward) scan walks from the
        # latest step to the earliest; no reliance on the scan's reverse mode.
        start = (n_tiles - 1 - tile) * BLOCK_T
        rows = (start + BLOCK_T - 1 - steps).to(tl.int64)
        mask = (rows < T)[:, None] & col_mask[None, :]
        at = rows[:, None] * N + cols[None, :]
        reward = tl.load(rewards_ptr + at, mask=mask, other=0.0).to(tl.float32)
        done = tl.load(dones_ptr + at, mask=mask, other=0.0).to(tl.float32)
        value = tl.load(values_ptr + at, mask=mask, other=0.0).to(tl.float32)
        next_value = tl.load(values_ptr + at + N, mask=mask, other=0.0).to(tl.float32)
        not_done = 1.0 - done
        delta = reward + gamma * next_value * not_done - value
        # Padding rows past T are the identity map (offset 0, scale 1).
        scale = tl.where(mask, gamma * gae_lambda * not_done, 1.0)
        offset, total_scale = tl.associative_scan(
            (delta, scale), axis=0, combine_fn=_affine_compose
        )
        advantage = offset + total_scale * carry[None, :]
        tl.store(advantages_ptr + at, advantage, mask=mask)
        tl.store(returns_ptr + at, advantage + value, mask=mask)
        # The tile's earliest step (its last scan row) carries into the tile before it.
        carry = tl.sum(tl.where((steps == BLOCK_T - 1)[:, None], advantage, 0.0), axis=0)


def _check_inputs(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [T, N], got shape {tuple(rewards.shape)}")
    steps, envs = rewards.shape
    if tuple(values.shape) != (steps + 1, envs):
        raise ValueError(
            f"values must be [T + 1, N] = [{steps + 1}, {envs}] (last row: bootstrap value), "
            f"got {list(values.shape)}"
        )
    if tuple(dones.shape) != (steps, envs):
        raise ValueError(f"dones must be [T, N] = [{steps}, {envs}], got {list(dones.shape)}")
    if not rewards.dtype.is_floating_point or not values.dtype.is_floating_point:
        raise TypeError(
            f"rewards and values must be float tensors, got {rewards.dtype}, {values.dtype}"
        )


def gae_reference(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reversed ``lastgaelam`` loop, vectorised over envs (CPU path and ground truth)."""
    _check_inputs(rewards, values, dones)
    rewards = rewards.float()
    values = values.float()
    not_done = 1.0 - dones.float()
    advantages = torch.empty_like(rewards)
    last = torch.zeros_like(rewards[0]) if rewards.shape[0] else rewards.new_zeros(0)
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * values[t + 1] * not_done[t] - values[t]
        last = delta + gamma * lam * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values[:-1]


def _gae_launch(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
    backend: Backend,
) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = rewards.float().contiguous()
    values = values.float().contiguous()
    dones = dones.float().contiguous()
    steps, envs = rewards.shape
    advantages = torch.empty_like(rewards)
    returns = torch.empty_like(rewards)
    if steps * envs == 0:
        return advantages, returns
    if backend == "interpreter":
        block_t, block_n = INTERPRETER_BLOCK_T, INTERPRETER_BLOCK_N
    else:
        block_t, block_n = GPU_BLOCK_T, GPU_BLOCK_N
    grid = (cdiv(envs, block_n),)
    _gae_kernel.launcher(backend)[grid](
        rewards,
        values,
        dones,
        advantages,
        returns,
        steps,
        envs,
        float(gamma),
        float(lam),
        BLOCK_T=block_t,
        BLOCK_N=block_n,
        **launch_options(backend),
    )
    return advantages, returns


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, both [T, N] fp32.

    Args:
        rewards: [T, N] float.
        values: [T + 1, N] float; the last row is the bootstrap value of the state after
            step T - 1 (ignored for envs whose episode ended there).
        dones: [T, N] bool or float, 1 when the episode ended at step t.
        gamma: discount; lam: GAE lambda (SPEC: 0.9 and 0.95).

    Not differentiable (rollout data); the result is detached.
    """
    _check_inputs(rewards, values, dones)
    backend = choose_backend(rewards, values, dones)
    with torch.no_grad():
        if backend == "reference":
            return gae_reference(rewards, values, dones, gamma, lam)
        return _gae_launch(rewards, values, dones, gamma, lam, backend)


__all__ = ["gae", "gae_reference"]
