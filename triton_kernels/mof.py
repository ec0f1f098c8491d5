"""Mixture-of-Features merges of CLIP and DINOv2 visual tokens (thesis section 3.4).

Interleaved MoF: both encoders' tokens, each through its own adapter, are merged in
spatial order ``(c0, d0, c1, d1, ...)``: clip_tokens, dino_tokens [B, N, D] -> [B, 2N, D].
Given ``out`` (an input-embeddings buffer [B, L, D]) and per-row ``offsets`` [B] (where the
image tokens start in each row), the kernel writes the merged tokens straight into
``out[b, offsets[b] : offsets[b] + 2N]`` in place, so the usual stack + reshape + cat
copies never happen. Differentiable w.r.t. both token sets and the buffer's earlier
history (the overwritten positions get no gradient).

Additive MoF: ``alpha * clip + (1 - alpha) * dino`` elementwise (before the adapter).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from ._dispatch import Backend, cdiv, choose_backend, launch_options, lazy_jit, tl

# Feature block per program: 1024 elements is 4 warps x 8 values per thread, two 4 KB
# rows of fp32 per program; LLaVA-NeXT's D = 4096 is 4 blocks per token.
GPU_BLOCK_D = 1024
GPU_ADDITIVE_BLOCK = 2048
INTERPRETER_BLOCK_D = 32
INTERPRETER_ADDITIVE_BLOCK = 256


@lazy_jit
def _interleave_scatter_kernel(
    clip_ptr,
    dino_ptr,
    out_ptr,
    offsets_ptr,
    N,
    D,
    clip_stride_b,
    clip_stride_n,
    dino_stride_b,
    dino_stride_n,
    out_stride_b,
    out_stride_l,
    BLOCK_D: tl.constexpr,
):
    """Program (b * N + i, feature block): out rows offsets[b] + 2i, + 2i + 1 <- clip, dino."""
    token = tl.program_id(0).to(tl.int64)
    b = token // N
    i = token % N
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = cols < D
    row = tl.load(offsets_ptr + b) + 2 * i
    clip = tl.load(clip_ptr + b * clip_stride_b + i * clip_stride_n + cols, mask=mask)
    dino = tl.load(dino_ptr + b * dino_stride_b + i * dino_stride_n + cols, mask=mask)
    out_row_ptr = out_ptr + b * out_stride_b + row * out_stride_l + cols
    tl.store(out_row_ptr, clip.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_row_ptr + out_stride_l, dino.to(out_ptr.dtype.element_ty), mask=mask)


@lazy_jit
def _interleave_gather_kernel(
    grad_out_ptr,
    grad_clip_ptr,
    grad_dino_ptr,
    grad_buffer_ptr,
    offsets_ptr,
    N,
    D,
    grad_out_stride_b,
    grad_out_stride_l,
    grad_buffer_stride_b,
    grad_buffer_stride_l,
    ZERO_BUFFER: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Backward: grad_clip/grad_dino [B, N, D] (contiguous) <- the merged rows of grad_out.

    With ZERO_BUFFER, the same rows of grad_buffer (a copy of grad_out going to the
    buffer's earlier history) are zeroed, since the merge overwrote them.
    """
    token = tl.program_id(0).to(tl.int64)
    b = token // N
    i = token % N
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = cols < D
    row = tl.load(offsets_ptr + b) + 2 * i
    src = grad_out_ptr + b * grad_out_stride_b + row * grad_out_stride_l + cols
    grad_clip = tl.load(src, mask=mask)
    grad_dino = tl.load(src + grad_out_stride_l, mask=mask)
    dst = token * D + cols
    tl.store(grad_clip_ptr + dst, grad_clip.to(grad_clip_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_dino_ptr + dst, grad_dino.to(grad_dino_ptr.dtype.element_ty), mask=mask)
    if ZERO_BUFFER:
        zeros = tl.zeros([BLOCK_D], dtype=grad_buffer_ptr.dtype.element_ty)
        buf = grad_buffer_ptr + b * grad_buffer_stride_b + row * grad_buffer_stride_l + cols
        tl.store(buf, zeros, mask=mask)
        tl.store(buf + grad_buffer_stride_l, zeros, mask=mask)


@lazy_jit
def _additive_kernel(a_ptr, b_ptr, out_ptr, numel, alpha, BLOCK: tl.constexpr):
    """out = alpha * a + (1 - alpha) * b over flat contiguous tensors (fp32 arithmetic)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    a = tl.load(a_ptr + offs, mask=mask).to(tl.float32)
    b = tl.load(b_ptr + offs, mask=mask).to(tl.float32)
    mixed = alpha * a + (1.0 - alpha) * b
    tl.store(out_ptr + offs, mixed.to(out_ptr.dtype.element_ty), mask=mask)


@lazy_jit
def _additive_backward_kernel(grad_ptr, grad_a_ptr, grad_b_ptr, numel, alpha, BLOCK: tl.constexpr):
    """grad_a = alpha * grad, grad_b = (1 - alpha) * grad, reading grad once."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    grad = tl.load(grad_ptr + offs, mask=mask).to(tl.float32)
    tl.store(grad_a_ptr + offs, (alpha * grad).to(grad_a_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_b_ptr + offs, ((1.0 - alpha) * grad).to(grad_b_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------
# Checks and references
# ----------------------------------------------------------------------------------------


def _check_interleave(
    clip_tokens: torch.Tensor,
    dino_tokens: torch.Tensor,
    out: torch.Tensor | None,
    offsets: torch.Tensor | Sequence[int] | None,
) -> torch.Tensor | None:
    """Validate shapes; returns the offsets as an int64 tensor on the buffer's device."""
    if clip_tokens.dim() != 3:
        raise ValueError(f"clip_tokens must be [B, N, D], got shape {tuple(clip_tokens.shape)}")
    if tuple(dino_tokens.shape) != tuple(clip_tokens.shape):
        raise ValueError(
            "clip_tokens and dino_tokens must have the same [B, N, D] shape, got "
            f"{tuple(clip_tokens.shape)} and {tuple(dino_tokens.shape)}"
        )
    if dino_tokens.dtype != clip_tokens.dtype:
        raise TypeError(
            f"clip_tokens and dino_tokens must share a dtype, got {clip_tokens.dtype} "
            f"and {dino_tokens.dtype}"
        )
    if out is None:
        if offsets is not None:
            raise ValueError("offsets need an out buffer to place the merged tokens in")
        return None
    batch, tokens, width = clip_tokens.shape
    if out.dim() != 3 or out.shape[0] != batch or out.shape[2] != width:
        raise ValueError(
            f"out must be [B, L, D] = [{batch}, L, {width}], got shape {tuple(out.shape)}"
        )
    if offsets is None:
        offsets = torch.zeros(batch, dtype=torch.int64, device=out.device)
    else:
        offsets = torch.as_tensor(offsets, device=out.device).to(torch.int64).reshape(-1)
    if offsets.numel() != batch:
        raise ValueError(f"offsets must hold one start per row ({batch}), got {offsets.numel()}")
    if batch and (int(offsets.min()) < 0 or int(offsets.max()) + 2 * tokens > out.shape[1]):
        raise ValueError(
            f"offsets place 2N = {2 * tokens} merged tokens outside out's length {out.shape[1]}: "
            f"offsets range [{int(offsets.min())}, {int(offsets.max())}]"
        )
    return offsets


def mof_interleave_reference(
    clip_tokens: torch.Tensor,
    dino_tokens: torch.Tensor,
    out: torch.Tensor | None = None,
    offsets: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """stack + reshape, then a scatter into ``out`` (in place) when a buffer is given."""
    offsets = _check_interleave(clip_tokens, dino_tokens, out, offsets)
    batch, tokens, width = clip_tokens.shape
    merged = torch.stack((clip_tokens, dino_tokens), dim=2).reshape(batch, 2 * tokens, width)
    if out is None:
        return merged
    positions = offsets[:, None] + torch.arange(2 * tokens, device=out.device)[None, :]
    out.scatter_(1, positions[:, :, None].expand(-1, -1, width), merged.to(out.dtype))
    return out


def _check_additive(clip: torch.Tensor, dino: torch.Tensor, alpha: float) -> None:
    if tuple(clip.shape) != tuple(dino.shape):
        raise ValueError(
            f"clip and dino must have the same shape, got {tuple(clip.shape)} and "
            f"{tuple(dino.shape)}"
        )
    if clip.dtype != dino.dtype:
        raise TypeError(f"clip and dino must share a dtype, got {clip.dtype} and {dino.dtype}")
    if isinstance(alpha, torch.Tensor):
        raise TypeError("alpha must be a Python float")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (the share of CLIP features), got {alpha}")


def mof_additive_reference(clip: torch.Tensor, dino: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * clip + (1 - alpha) * dino`` in PyTorch."""
    _check_additive(clip, dino, alpha)
    return alpha * clip + (1.0 - alpha) * dino


# ----------------------------------------------------------------------------------------
# Launches and autograd
# ----------------------------------------------------------------------------------------


def _block_d(backend: Backend, width: int) -> int:
    if backend == "interpreter":
        return INTERPRETER_BLOCK_D
    return min(GPU_BLOCK_D, max(16, 1 << (width - 1).bit_length()))


class _InterleaveFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, clip_tokens, dino_tokens, out, offsets, backend):
        batch, tokens, width = clip_tokens.shape
        clip_tokens = clip_tokens if clip_tokens.stride(-1) == 1 else clip_tokens.contiguous()
        dino_tokens = dino_tokens if dino_tokens.stride(-1) == 1 else dino_tokens.contiguous()
        fresh = out is None
        if fresh:
            out = torch.empty(
                (batch, 2 * tokens, width), dtype=clip_tokens.dtype, device=clip_tokens.device
            )
            offsets = torch.zeros(batch, dtype=torch.int64, device=clip_tokens.device)
        elif out.stride(-1) != 1:
            raise ValueError("out must have a contiguous last dimension to be written in place")
        block_d = _block_d(backend, width)
        if batch * tokens and width:
            grid = (batch * tokens, cdiv(width, block_d))
            _interleave_scatter_kernel.launcher(backend)[grid](
                clip_tokens,
                dino_tokens,
                out,
                offsets,
                tokens,
                width,
                clip_tokens.stride(0),
                clip_tokens.stride(1),
                dino_tokens.stride(0),
                dino_tokens.stride(1),
                out.stride(0),
                out.stride(1),
                BLOCK_D=block_d,
                **launch_options(backend),
            )
        if not fresh:
            ctx.mark_dirty(out)
        ctx.save_for_backward(offsets)
        ctx.token_shape = (batch, tokens, width)
        ctx.token_dtype = clip_tokens.dtype
        ctx.backend = backend
        ctx.fresh = fresh
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (offsets,) = ctx.saved_tensors
        batch, tokens, width = ctx.token_shape
        grad_out = grad_out if grad_out.stride(-1) == 1 else grad_out.contiguous()
        grad_clip = torch.empty(ctx.token_shape, dtype=ctx.token_dtype, device=grad_out.device)
        grad_dino = torch.empty_like(grad_clip)
        zero_buffer = (not ctx.fresh) and ctx.needs_input_grad[2]
        grad_buffer = grad_out.clone() if zero_buffer else grad_out
        block_d = _block_d(ctx.backend, width)
        if batch * tokens and width:
            grid = (batch * tokens, cdiv(width, block_d))
            _interleave_gather_kernel.launcher(ctx.backend)[grid](
                grad_out,
                grad_clip,
                grad_dino,
                grad_buffer,
                offsets,
                tokens,
                width,
                grad_out.stride(0),
                grad_out.stride(1),
                grad_buffer.stride(0),
                grad_buffer.stride(1),
                ZERO_BUFFER=zero_buffer,
                BLOCK_D=block_d,
                **launch_options(ctx.backend),
            )
        return grad_clip, grad_dino, (grad_buffer if zero_buffer else None), None, None


def _additive_block(backend: Backend) -> int:
    return INTERPRETER_ADDITIVE_BLOCK if backend == "interpreter" else GPU_ADDITIVE_BLOCK


class _AdditiveFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, clip, dino, alpha, backend):
        clip = clip.contiguous()
        dino = dino.contiguous()
        out = torch.empty_like(clip)
        block = _additive_block(backend)
        if clip.numel():
            _additive_kernel.launcher(backend)[(cdiv(clip.numel(), block),)](
                clip, dino, out, clip.numel(), float(alpha), BLOCK=block, **launch_options(backend)
            )
        ctx.alpha = alpha
        ctx.backend = backend
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        grad = grad.contiguous()
        grad_clip = torch.empty_like(grad)
        grad_dino = torch.empty_like(grad)
        block = _additive_block(ctx.backend)
        if grad.numel():
            _additive_backward_kernel.launcher(ctx.backend)[(cdiv(grad.numel(), block),)](
                grad,
                grad_clip,
                grad_dino,
                grad.numel(),
                float(ctx.alpha),
                BLOCK=block,
                **launch_options(ctx.backend),
            )
        return grad_clip, grad_dino, None, None


# ----------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------


def mof_interleave(
    clip_tokens: torch.Tensor,
    dino_tokens: torch.Tensor,
    out: torch.Tensor | None = None,
    offsets: torch.Tensor | Sequence[int] | None = None,
) -> torch.Tensor:
    """Interleave two adapters' tokens in spatial order: (c0, d0, c1, d1, ...).

    Args:
        clip_tokens, dino_tokens: [B, N, D], same dtype (each after its adapter).
        out: optional [B, L, D] buffer (e.g. the input embeddings) written in place; values
            are cast to its dtype.
        offsets: [B] start position of the merged tokens in each row of ``out`` (int tensor
            or ints); default 0. Needs ``out``.

    Returns:
        The new [B, 2N, D] tensor, or ``out`` itself after the in-place write.
    """
    offsets = _check_interleave(clip_tokens, dino_tokens, out, offsets)
    tensors = (clip_tokens, dino_tokens) if out is None else (clip_tokens, dino_tokens, out)
    backend = choose_backend(*tensors)
    if backend == "reference":
        return mof_interleave_reference(clip_tokens, dino_tokens, out, offsets)
    return _InterleaveFunction.apply(clip_tokens, dino_tokens, out, offsets, backend)


def mof_additive(clip: torch.Tensor, dino: torch.Tensor, alpha: float) -> torch.Tensor:
    """Additive MoF: ``alpha * clip + (1 - alpha) * dino`` (same shape and dtype; alpha in [0, 1])."""
    _check_additive(clip, dino, alpha)
    backend = choose_backend(clip, dino)
    if backend == "reference":
        return mof_additive_reference(clip, dino, alpha)
    return _AdditiveFunction.apply(clip, dino, float(alpha), backend)


__all__ = [
    "mof_additive",
    "mof_additive_reference",
    "mof_interleave",
    "mof_interleave_reference",
]
