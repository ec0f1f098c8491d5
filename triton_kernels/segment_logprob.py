"""Per-sequence, per-segment token log-probabilities without a [B, T, V] log-softmax.

PPO for VLM agents (SPEC section 2) scores an output ``v_out = [v_tht, v_act]`` as
``lam * log pi(v_tht) + log pi(v_act)``, with the logits divided by the sampling temperature.
Each token carries a segment id: ``IGNORE`` (prompt, padding), ``THOUGHT`` or ``ACTION``.

Shapes: logits [B, T, V] (fp32, bf16 or fp16; last dimension contiguous, any batch/time
strides, so a shifted view ``logits[:, p:-1]`` is used without a copy), targets [B, T] int64,
segment_ids [B, T] int8. ``logits[:, t]`` predicts ``targets[:, t]``; the caller shifts.

The Triton forward reads each active row once, keeping an online logsumexp over
vocabulary blocks and, in the same pass, the entropy ``log s - sum(e * d) / s`` (with
``d = x - m``, ``e = exp(d)``, ``s = sum(e)`` relative to the running maximum ``m``). It writes
per-token log-prob, entropy and logsumexp ([B, T] fp32 each); nothing of size V is kept.
The backward reads each active row once more and writes

    d logits = (g_logp * (onehot - p) - g_ent * p * (log p + H)) / temperature

where ``g_logp`` is the gradient reaching each token's log-prob (its lam or 1 weight times
the sequence's upstream gradient, plus any gradient on the per-token output) and ``g_ent``
the one reaching its entropy, so the entropy bonus is differentiated in the same kernel. Ignored rows are never read; their gradient
rows are written as zeros.

``segment_logprob_from_hidden`` takes the last hidden states and the LM head instead and
works on the active tokens only, a chunk of tokens at a time, recomputing each chunk's
logits in the backward: the [B, T, V] logits never exist.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from ._dispatch import HAS_TRITON, Backend, choose_backend, launch_options, lazy_jit, tl

IGNORE = 0
THOUGHT = 1
ACTION = 2

# Vocabulary block per loop step. On GPU 4096 values per program keeps 8 warps busy with
# 16 values per thread (ptxas for sm_90: 48 registers forward, 80 backward, no spills;
# untuned on a device so far); in the interpreter
# every block is a numpy call, and a small block makes a V that is not a multiple of it
# cheap to test.
GPU_BLOCK_V = 4096
GPU_NUM_WARPS = 8
INTERPRETER_BLOCK_V = 256

# from_hidden: elements of one chunk of logits ([tokens, V]). 2**26 is 256 MiB in fp32,
# 128 MiB in bf16: ~520 tokens at V = 128256, ~2100 at V = 32064, enough rows for the
# matmul to run at full speed while staying far below the [B*T, V] whole.
FROM_HIDDEN_CHUNK_ELEMENTS = 2**26


class SegmentLogprob(NamedTuple):
    """Outputs of the segment log-prob functions when per-token values are asked for."""

    logprob: torch.Tensor
    """[B] fp32: lam * sum of thought-token log-probs + sum of action-token log-probs."""
    token_logprobs: torch.Tensor
    """[B, T] fp32: log p(target) per token, 0 where the segment id is IGNORE."""
    entropy: torch.Tensor
    """[B, T] fp32: entropy of the temperature-scaled distribution, 0 where ignored."""


# ----------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------


@lazy_jit
def _segment_logprob_forward_kernel(
    logits_ptr,
    logits_stride_b,
    logits_stride_t,
    targets_ptr,
    targets_stride_b,
    targets_stride_t,
    segments_ptr,
    segments_stride_b,
    segments_stride_t,
    token_logp_ptr,
    entropy_ptr,
    lse_ptr,
    T,
    V,
    inv_temperature,
    BLOCK_V: tl.constexpr,
):
    """One program per token row. Writes token_logp, entropy, lse ([B*T] fp32, contiguous)."""
    row = tl.program_id(0).to(tl.int64)
    b = row // T
    t = row % T
    segment = tl.load(segments_ptr + b * segments_stride_b + t * segments_stride_t)
    active = segment != 0
    n_blocks = tl.cdiv(V, BLOCK_V)
    # Ignored rows run zero iterations: their logits are never read.
    n_blocks_read = tl.where(active, n_blocks, 0)
    row_ptr = logits_ptr + b * logits_stride_b + t * logits_stride_t
    offsets = tl.arange(0, BLOCK_V)

    # A finite start keeps exp(m - m_new) and (m - m_new) * s free of inf - inf when whole
    # blocks are -inf (suppressed tokens).
    m = -1.0e30
    s = 0.0
    sum_e_d = 0.0
    for block in range(0, n_blocks_read):
        cols = block * BLOCK_V + offsets
        mask = cols < V
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        x = x * inv_temperature
        m_new = tl.maximum(m, tl.max(x, axis=0))
        rescale = tl.exp(m - m_new)
        d = x - m_new
        e = tl.exp(d)
        # Masked and -inf entries have e = 0 and d = -inf; their e * d term is 0.
        e_d = e * tl.where(e > 0.0, d, 0.0)
        sum_e_d = rescale * (sum_e_d + (m - m_new) * s) + tl.sum(e_d, axis=0)
        s = rescale * s + tl.sum(e, axis=0)
        m = m_new

    # Ignored rows read nothing (s = 0); a stand-in keeps their unused results finite.
    s = tl.where(active, s, 1.0)
    log_s = tl.log(s)
    lse = m + log_s
    entropy = log_s - sum_e_d / s
    target = tl.load(targets_ptr + b * targets_stride_b + t * targets_stride_t)
    target = tl.where(active, target, 0)
    target_logit = tl.load(row_ptr + target).to(tl.float32) * inv_temperature
    token_logp = tl.where(active, target_logit - lse, 0.0)
    entropy = tl.where(active, entropy, 0.0)
    tl.store(token_logp_ptr + row, token_logp)
    tl.store(entropy_ptr + row, entropy)
    tl.store(lse_ptr + row, lse)


@lazy_jit
def _segment_logprob_backward_kernel(
    logits_ptr,
    logits_stride_b,
    logits_stride_t,
    targets_ptr,
    targets_stride_b,
    targets_stride_t,
    segments_ptr,
    segments_stride_b,
    segments_stride_t,
    lse_ptr,
    entropy_ptr,
    grad_logp_ptr,
    grad_entropy_ptr,
    grad_logits_ptr,
    T,
    V,
    inv_temperature,
    HAS_ENTROPY_GRAD: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    """One program per token row. grad_logits is a fresh contiguous [B*T, V] tensor."""
    row = tl.program_id(0).to(tl.int64)
    b = row // T
    t = row % T
    segment = tl.load(segments_ptr + b * segments_stride_b + t * segments_stride_t)
    active = segment != 0
    n_blocks = tl.cdiv(V, BLOCK_V)
    n_blocks_read = tl.where(active, n_blocks, 0)
    row_ptr = logits_ptr + b * logits_stride_b + t * logits_stride_t
    out_ptr = grad_logits_ptr + row * V
    offsets = tl.arange(0, BLOCK_V)

    target = tl.load(targets_ptr + b * targets_stride_b + t * targets_stride_t)
    lse = tl.load(lse_ptr + row)
    # The chain rule through x = logits / temperature contributes the 1 / temperature.
    grad_logp = tl.load(grad_logp_ptr + row) * inv_temperature
    if HAS_ENTROPY_GRAD:
        grad_entropy = tl.load(grad_entropy_ptr + row) * inv_temperature
        entropy = tl.load(entropy_ptr + row)

    for block in range(0, n_blocks_read):
        cols = block * BLOCK_V + offsets
        mask = cols < V
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        log_p = x * inv_temperature - lse
        p = tl.exp(log_p)
        grad = tl.where(cols == target, grad_logp, 0.0) - grad_logp * p
        if HAS_ENTROPY_GRAD:
            # dH/dx_j = -p_j (log p_j + H); p_j = 0 terms are dropped to avoid 0 * -inf.
            grad -= grad_entropy * p * (tl.where(p > 0.0, log_p, 0.0) + entropy)
        tl.store(out_ptr + cols, grad.to(grad_logits_ptr.dtype.element_ty), mask=mask)

    zeros = tl.zeros([BLOCK_V], dtype=grad_logits_ptr.dtype.element_ty)
    for block in range(n_blocks_read, n_blocks):
        cols = block * BLOCK_V + offsets
        tl.store(out_ptr + cols, zeros, mask=cols < V)


# ----------------------------------------------------------------------------------------
# PyTorch reference (CPU path and ground truth)
# ----------------------------------------------------------------------------------------


def segment_weights(segment_ids: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-token weights [B, T] fp32: lam for THOUGHT, 1 for ACTION, 0 for IGNORE."""
    thought = (segment_ids == THOUGHT).to(torch.float32)
    action = (segment_ids == ACTION).to(torch.float32)
    return lam * thought + action


def segment_logprob_reference(
    logits: torch.Tensor,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    lam: float,
    temperature: float = 1.0,
    return_token_logprobs: bool = False,
    return_entropy: bool = False,
) -> torch.Tensor | SegmentLogprob:
    """Plain PyTorch form (materialises the [B, T, V] log-softmax in fp32); same outputs."""
    _check_inputs(logits, targets, segment_ids, lam, temperature)
    log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)
    active = segment_ids != IGNORE
    safe_targets = torch.where(active, targets, torch.zeros_like(targets))
    token_logp = log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    token_logp = torch.where(active, token_logp, torch.zeros_like(token_logp))
    logprob = (token_logp * segment_weights(segment_ids, lam)).sum(dim=-1)
    if not (return_token_logprobs or return_entropy):
        return logprob
    # Clamping keeps 0 * log 0 finite (and its gradient 0) for -inf logits.
    finite_log_probs = log_probs.clamp_min(torch.finfo(torch.float32).min)
    entropy = -(log_probs.exp() * finite_log_probs).sum(dim=-1)
    entropy = torch.where(active, entropy, torch.zeros_like(entropy))
    return SegmentLogprob(logprob, token_logp, entropy)


def segment_logprob_from_hidden_reference(
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    lam: float,
    temperature: float = 1.0,
    return_token_logprobs: bool = False,
    return_entropy: bool = False,
) -> torch.Tensor | SegmentLogprob:
    """Plain PyTorch form: the whole logits ``hidden @ lm_head_weight.T``, then the reference."""
    _check_hidden(hidden, lm_head_weight)
    logits = hidden @ lm_head_weight.t()
    return segment_logprob_reference(
        logits, targets, segment_ids, lam, temperature, return_token_logprobs, return_entropy
    )


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------

_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_inputs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    lam: float,
    temperature: float,
) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    if logits.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"logits must be float32, bfloat16 or float16, got {logits.dtype}")
    _check_tokens(tuple(logits.shape[:2]), logits.shape[2], targets, segment_ids, lam, temperature)


def _check_tokens(
    batch_time: tuple[int, ...],
    vocab: int,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    lam: float,
    temperature: float,
) -> None:
    if tuple(targets.shape) != batch_time:
        raise ValueError(f"targets must be {list(batch_time)}, got {list(targets.shape)}")
    if tuple(segment_ids.shape) != batch_time:
        raise ValueError(f"segment_ids must be {list(batch_time)}, got {list(segment_ids.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
    if segment_ids.dtype.is_floating_point or segment_ids.dtype == torch.bool:
        raise TypeError(f"segment_ids must be an integer tensor (int8), got {segment_ids.dtype}")
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if isinstance(lam, torch.Tensor):
        raise TypeError("lam must be a Python float (it weights the thought tokens)")
    if segment_ids.numel() == 0:
        return
    # One host sync for both checks; the details are only worked out on failure.
    bad_segment = (segment_ids < IGNORE) | (segment_ids > ACTION)
    bad_target = (segment_ids != IGNORE) & ((targets < 0) | (targets >= vocab))
    any_bad_segment, any_bad_target = torch.stack((bad_segment.any(), bad_target.any())).tolist()
    if any_bad_segment:
        raise ValueError(
            "segment_ids must hold 0 (ignore), 1 (thought) or 2 (action); "
            f"found values in [{int(segment_ids.min())}, {int(segment_ids.max())}]"
        )
    if any_bad_target:
        where = tuple(int(i) for i in bad_target.nonzero()[0])
        raise ValueError(
            f"target id {int(targets[where])} at position {where} is outside the vocabulary "
            f"[0, {vocab}) on a non-ignored token"
        )


def _check_hidden(hidden: torch.Tensor, lm_head_weight: torch.Tensor) -> None:
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, T, H], got shape {tuple(hidden.shape)}")
    if lm_head_weight.dim() != 2 or lm_head_weight.shape[1] != hidden.shape[2]:
        raise ValueError(
            f"lm_head_weight must be [V, H] with H = {hidden.shape[2]}, "
            f"got shape {tuple(lm_head_weight.shape)}"
        )
    if hidden.dtype not in _FLOAT_DTYPES or lm_head_weight.dtype != hidden.dtype:
        raise TypeError(
            "hidden and lm_head_weight must share one float dtype, "
            f"got {hidden.dtype} and {lm_head_weight.dtype}"
        )


# ----------------------------------------------------------------------------------------
# Host launches
# ----------------------------------------------------------------------------------------


def _launch_config(backend: Backend, vocab: int) -> tuple[int, dict[str, int]]:
    if backend == "interpreter":
        return INTERPRETER_BLOCK_V, launch_options(backend)
    block_v = min(GPU_BLOCK_V, max(16, 1 << (vocab - 1).bit_length()))
    return block_v, launch_options(backend, num_warps=GPU_NUM_WARPS)


def _forward_launch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    temperature: float,
    backend: Backend,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """token_logp, entropy, lse: [B, T] fp32 each."""
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    batch, time, vocab = logits.shape
    token_logp = torch.empty((batch, time), dtype=torch.float32, device=logits.device)
    entropy = torch.empty_like(token_logp)
    lse = torch.empty_like(token_logp)
    if batch * time == 0:
        return token_logp, entropy, lse
    block_v, launch = _launch_config(backend, vocab)
    _segment_logprob_forward_kernel.launcher(backend)[(batch * time,)](
        logits,
        logits.stride(0),
        logits.stride(1),
        targets,
        targets.stride(0),
        targets.stride(1),
        segment_ids,
        segment_ids.stride(0),
        segment_ids.stride(1),
        token_logp,
        entropy,
        lse,
        time,
        vocab,
        1.0 / temperature,
        BLOCK_V=block_v,
        **launch,
    )
    return token_logp, entropy, lse


def _backward_launch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor,
    grad_logp: torch.Tensor | None,
    grad_entropy: torch.Tensor | None,
    temperature: float,
    backend: Backend,
) -> torch.Tensor:
    """d loss / d logits, a fresh contiguous tensor of the logits' shape and dtype."""
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    batch, time, vocab = logits.shape
    grad_logits = torch.empty((batch, time, vocab), dtype=logits.dtype, device=logits.device)
    if batch * time == 0:
        return grad_logits
    if grad_logp is None:
        grad_logp = torch.zeros_like(lse)
    grad_logp = grad_logp.float().contiguous()
    has_entropy_grad = grad_entropy is not None
    grad_entropy = grad_entropy.float().contiguous() if has_entropy_grad else grad_logp
    block_v, launch = _launch_config(backend, vocab)
    _segment_logprob_backward_kernel.launcher(backend)[(batch * time,)](
        logits,
        logits.stride(0),
        logits.stride(1),
        targets,
        targets.stride(0),
        targets.stride(1),
        segment_ids,
        segment_ids.stride(0),
        segment_ids.stride(1),
        lse,
        entropy,
        grad_logp,
        grad_entropy,
        grad_logits,
        time,
        vocab,
        1.0 / temperature,
        HAS_ENTROPY_GRAD=has_entropy_grad,
        BLOCK_V=block_v,
        **launch,
    )
    return grad_logits


# ----------------------------------------------------------------------------------------
# Autograd
# ----------------------------------------------------------------------------------------


class _TokenLogprobFunction(torch.autograd.Function):
    """logits -> (token_logp [B, T], entropy [B, T]) with the fused Triton forward/backward."""

    @staticmethod
    def forward(ctx, logits, targets, segment_ids, temperature, backend):
        token_logp, entropy, lse = _forward_launch(
            logits, targets, segment_ids, temperature, backend
        )
        ctx.save_for_backward(logits, targets, segment_ids, lse, entropy)
        ctx.temperature = temperature
        ctx.backend = backend
        ctx.set_materialize_grads(False)
        return token_logp, entropy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_token_logp, grad_entropy):
        logits, targets, segment_ids, lse, entropy = ctx.saved_tensors
        if grad_token_logp is None and grad_entropy is None:
            return None, None, None, None, None
        grad_logits = _backward_launch(
            logits,
            targets,
            segment_ids,
            lse,
            entropy,
            grad_token_logp,
            grad_entropy,
            ctx.temperature,
            ctx.backend,
        )
        return grad_logits, None, None, None, None


def _chunk_tokens(vocab: int) -> int:
    return max(1, FROM_HIDDEN_CHUNK_ELEMENTS // max(vocab, 1))


class _TokenLogprobFromHiddenFunction(torch.autograd.Function):
    """(hidden, lm_head_weight) -> (token_logp, entropy), a chunk of active tokens at a time.

    Only the active (non-ignored) tokens are scored; each chunk's logits are made, reduced
    by the forward kernel and dropped, then made again in the backward.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, segment_ids, temperature, backend):
        batch, time, width = hidden.shape
        vocab = weight.shape[0]
        flat_segments = segment_ids.reshape(-1)
        active_index = torch.nonzero(flat_segments != IGNORE).squeeze(1)
        active_hidden = hidden.reshape(batch * time, width).index_select(0, active_index)
        active_targets = targets.reshape(-1).index_select(0, active_index)
        active_segments = flat_segments.index_select(0, active_index)
        n_active = active_index.numel()
        token_logp = torch.zeros(batch * time, dtype=torch.float32, device=hidden.device)
        entropy = torch.zeros_like(token_logp)
        active_lse = torch.empty(n_active, dtype=torch.float32, device=hidden.device)
        active_entropy = torch.empty_like(active_lse)
        active_logp = torch.empty_like(active_lse)
        chunk = _chunk_tokens(vocab)
        for start in range(0, n_active, chunk):
            stop = min(start + chunk, n_active)
            logits = (active_hidden[start:stop] @ weight.t()).unsqueeze(0)
            chunk_logp, chunk_entropy, chunk_lse = _forward_launch(
                logits,
                active_targets[start:stop].unsqueeze(0),
                active_segments[start:stop].unsqueeze(0),
                temperature,
                backend,
            )
            active_logp[start:stop] = chunk_logp[0]
            active_entropy[start:stop] = chunk_entropy[0]
            active_lse[start:stop] = chunk_lse[0]
        token_logp.index_copy_(0, active_index, active_logp)
        entropy.index_copy_(0, active_index, active_entropy)
        ctx.save_for_backward(
            active_hidden, weight, active_index, active_targets, active_segments, active_lse,
            active_entropy,
        )  # fmt: skip
        ctx.hidden_shape = (batch, time, width)
        ctx.temperature = temperature
        ctx.backend = backend
        ctx.set_materialize_grads(False)
        return token_logp.view(batch, time), entropy.view(batch, time)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_token_logp, grad_entropy):
        (
            active_hidden,
            weight,
            active_index,
            active_targets,
            active_segments,
            active_lse,
            active_entropy,
        ) = ctx.saved_tensors
        batch, time, width = ctx.hidden_shape
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if (grad_token_logp is None and grad_entropy is None) or not (need_hidden or need_weight):
            return None, None, None, None, None, None
        active_grad_logp = (
            grad_token_logp.reshape(-1).index_select(0, active_index)
            if grad_token_logp is not None
            else None
        )
        active_grad_entropy = (
            grad_entropy.reshape(-1).index_select(0, active_index)
            if grad_entropy is not None
            else None
        )
        n_active = active_index.numel()
        grad_active_hidden = torch.empty_like(active_hidden) if need_hidden else None
        # bf16 weight gradients are summed over chunks in fp32, then cast once.
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if need_weight
            else None
        )
        chunk = _chunk_tokens(weight.shape[0])
        for start in range(0, n_active, chunk):
            stop = min(start + chunk, n_active)
            chunk_hidden = active_hidden[start:stop]
            logits = (chunk_hidden @ weight.t()).unsqueeze(0)
            grad_logits = _backward_launch(
                logits,
                active_targets[start:stop].unsqueeze(0),
                active_segments[start:stop].unsqueeze(0),
                active_lse[start:stop].unsqueeze(0),
                active_entropy[start:stop].unsqueeze(0),
                None if active_grad_logp is None else active_grad_logp[start:stop].unsqueeze(0),
                None
                if active_grad_entropy is None
                else active_grad_entropy[start:stop].unsqueeze(0),
                ctx.temperature,
                ctx.backend,
            )[0]
            del logits
            if grad_active_hidden is not None:
                torch.matmul(grad_logits, weight, out=grad_active_hidden[start:stop])
            if grad_weight is not None:
                if weight.dtype == torch.float32:
                    grad_weight.addmm_(grad_logits.t(), chunk_hidden)
                else:
                    grad_weight += grad_logits.t() @ chunk_hidden
        grad_hidden = None
        if grad_active_hidden is not None:
            grad_hidden = torch.zeros(
                (batch * time, width), dtype=active_hidden.dtype, device=active_hidden.device
            )
            grad_hidden.index_copy_(0, active_index, grad_active_hidden)
            grad_hidden = grad_hidden.view(batch, time, width)
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


# ----------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------


def _package(
    token_logp: torch.Tensor,
    entropy: torch.Tensor,
    segment_ids: torch.Tensor,
    lam: float,
    want_tokens: bool,
) -> torch.Tensor | SegmentLogprob:
    logprob = (token_logp * segment_weights(segment_ids, lam)).sum(dim=-1)
    if not want_tokens:
        return logprob
    return SegmentLogprob(logprob, token_logp, entropy)


def segment_logprob(
    logits: torch.Tensor,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    lam: float,
    temperature: float = 1.0,
    return_token_logprobs: bool = False,
    return_entropy: bool = False,
) -> torch.Tensor | SegmentLogprob:
    """Per-sequence ``lam * sum log p(thought tokens) + sum log p(action tokens)``.

    Args:
        logits: [B, T, V] float32/bfloat16/float16; ``logits[:, t]`` predicts ``targets[:, t]``.
            Only the last dimension needs to be contiguous.
        targets: [B, T] integer token ids (any value where the segment id is IGNORE).
        segment_ids: [B, T] int8, ``IGNORE`` (0), ``THOUGHT`` (1) or ``ACTION`` (2).
        lam: weight of the thought tokens (SPEC: 0.5 card games, 0.2 ALFWorld).
        temperature: the logits are divided by it before the softmax, as at sampling.
        return_token_logprobs, return_entropy: when either is set, return a
            :class:`SegmentLogprob` with per-token log-probs and entropies (both always
            filled; the kernel computes them in the same pass).

    Returns:
        [B] fp32 log-prob (differentiable w.r.t. ``logits``), or a :class:`SegmentLogprob`.
    """
    want_tokens = return_token_logprobs or return_entropy
    backend = choose_backend(logits)
    if backend == "reference":
        return segment_logprob_reference(
            logits, targets, segment_ids, lam, temperature, want_tokens, want_tokens
        )
    _check_inputs(logits, targets, segment_ids, lam, temperature)
    token_logp, entropy = _TokenLogprobFunction.apply(
        logits, targets, segment_ids, float(temperature), backend
    )
    return _package(token_logp, entropy, segment_ids, lam, want_tokens)


def segment_logprob_from_hidden(
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    targets: torch.Tensor,
    segment_ids: torch.Tensor,
    lam: float,
    temperature: float = 1.0,
    return_token_logprobs: bool = False,
    return_entropy: bool = False,
) -> torch.Tensor | SegmentLogprob:
    """:func:`segment_logprob` of ``hidden @ lm_head_weight.T`` without the whole logits.

    Args:
        hidden: [B, T, H] last hidden states (after the final norm); ``hidden[:, t]`` predicts
            ``targets[:, t]``.
        lm_head_weight: [V, H], same dtype as ``hidden`` (an LM head without bias).
        Other arguments and the result as in :func:`segment_logprob`. Differentiable w.r.t.
        ``hidden`` and ``lm_head_weight``.
    """
    want_tokens = return_token_logprobs or return_entropy
    backend = choose_backend(hidden, lm_head_weight)
    if backend == "reference":
        return segment_logprob_from_hidden_reference(
            hidden, lm_head_weight, targets, segment_ids, lam, temperature, want_tokens, want_tokens
        )
    _check_hidden(hidden, lm_head_weight)
    _check_tokens(
        tuple(hidden.shape[:2]), lm_head_weight.shape[0], targets, segment_ids, lam, temperature
    )
    token_logp, entropy = _TokenLogprobFromHiddenFunction.apply(
        hidden, lm_head_weight, targets, segment_ids, float(temperature), backend
    )
    return _package(token_logp, entropy, segment_ids, lam, want_tokens)


__all__ = [
    "ACTION",
    "HAS_TRITON",
    "IGNORE",
    "THOUGHT",
    "SegmentLogprob",
    "segment_logprob",
    "segment_logprob_from_hidden",
    "segment_logprob_from_hidden_reference",
    "segment_logprob_reference",
    "segment_weights",
]
