"""MoF merges: Triton kernels (interpreter on CPU) vs the PyTorch reference.

Both merges only copy and scale: float32 results must match exactly (atol 0 / rtol 0
for the interleave, rtol 1e-6 for the mix). Where a value is rounded to bfloat16, the
Triton interpreter rounds toward zero while PyTorch (and compiled Triton) round to
nearest even, so those comparisons allow one bf16 step: atol 0 / rtol 1e-2 for the
interleave into a bf16 buffer, atol 1e-2 / rtol 1e-2 for the mix.
"""

from __future__ import annotations

import pytest
import torch
from vlrl.triton_kernels import (
    mof_additive,
    mof_additive_reference,
    mof_interleave,
    mof_interleave_reference,
)

# D = 40 with the interpreter's 32-wide feature blocks: the second block is partial.
BATCH, TOKENS, WIDTH = 3, 5, 40


def test_interleave_order():
    """(c0, d0, c1, d1, ...): even positions from CLIP, odd from DINO, spatial order kept."""
    clip = torch.arange(0, 6, 2, dtype=torch.float32).view(1, 3, 1).expand(1, 3, 4)
    dino = torch.arange(1, 6, 2, dtype=torch.float32).view(1, 3, 1).expand(1, 3, 4)
    merged = mof_interleave_reference(clip, dino)
    assert merged[0, :, 0].tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_interleave_fresh_tensor(dtype, rng, interpreter):
    clip = torch.randn(BATCH, TOKENS, WIDTH, generator=rng).to(dtype)
    dino = torch.randn(BATCH, TOKENS, WIDTH, generator=rng).to(dtype)
    upstream = torch.randn(BATCH, 2 * TOKENS, WIDTH, generator=rng).to(dtype)
    results = []
    for function in (mof_interleave, mof_interleave_reference):
        leaves = (clip.clone().requires_grad_(True), dino.clone().requires_grad_(True))
        merged = function(*leaves)
        results.append((merged, torch.autograd.grad((merged * upstream).sum(), leaves)))
    (ours, ours_grads), (ref, ref_grads) = results
    assert ours.shape == (BATCH, 2 * TOKENS, WIDTH) and ours.dtype == dtype
    torch.testing.assert_close(ours, ref, atol=0, rtol=0)
    for ours_grad, ref_grad in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(ours_grad, ref_grad, atol=0, rtol=0)


@pytest.mark.parametrize("buffer_dtype", [torch.float32, torch.bfloat16])
def test_interleave_into_buffer(buffer_dtype, rng, interpreter):
    """Written in place at ragged per-row offsets; grads reach tokens and the buffer's history."""
    length = 2 * TOKENS + 6
    clip = torch.randn(BATCH, TOKENS, WIDTH, generator=rng)
    dino = torch.randn(BATCH, TOKENS, WIDTH, generator=rng)
    embeddings = torch.randn(BATCH, length, WIDTH, generator=rng).to(buffer_dtype)
    offsets = torch.tensor([0, 6, 3])
    upstream = torch.randn(BATCH, length, WIDTH, generator=rng).to(buffer_dtype)
    results = []
    for function in (mof_interleave, mof_interleave_reference):
        leaves = (
            clip.clone().requires_grad_(True),
            dino.clone().requires_grad_(True),
            embeddings.clone().requires_grad_(True),
        )
        buffer = leaves[2] * 1  # a non-leaf, like an embedding lookup's output
        returned = function(leaves[0], leaves[1], out=buffer, offsets=offsets)
        assert returned is buffer
        results.append((buffer, torch.autograd.grad((buffer * upstream).sum(), leaves)))
    (ours, ours_grads), (ref, ref_grads) = results
    rtol = 0 if buffer_dtype == torch.float32 else 1e-2
    torch.testing.assert_close(ours, ref, atol=0, rtol=rtol)
    for ours_grad, ref_grad in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(ours_grad, ref_grad, atol=0, rtol=0)
    # Untouched rows keep the embeddings; overwritten ones pass no gradient back to them.
    torch.testing.assert_close(ours[1, :6], embeddings[1, :6])
    assert torch.all(ours_grads[2][1, 6 : 6 + 2 * TOKENS] == 0)
    assert torch.all(ours_grads[2][1, :6] == upstream[1, :6].float().to(buffer_dtype))
    torch.testing.assert_close(ours[2, 3 + 1], dino[2, 0].to(buffer_dtype), atol=0, rtol=rtol)


def test_interleave_into_buffer_without_grad(rng, interpreter):
    """A plain (no-grad) buffer and default offsets (0) also work."""
    clip = torch.randn(2, 3, 8, generator=rng, requires_grad=True)
    dino = torch.randn(2, 3, 8, generator=rng)
    buffer = torch.zeros(2, 7, 8)
    mof_interleave(clip, dino, out=buffer)
    torch.testing.assert_close(buffer[:, :6], mof_interleave_reference(clip, dino))
    assert torch.all(buffer[:, 6] == 0)
    (grad,) = torch.autograd.grad(buffer[:, 0].sum(), clip)
    assert grad[:, 0].eq(1).all() and grad[:, 1:].eq(0).all()


@pytest.mark.parametrize("function", [mof_interleave, mof_interleave_reference])
def test_interleave_errors(function):
    clip = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="same"):
        function(clip, torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="need an out buffer"):
        function(clip, clip, offsets=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outside out's length"):
        function(clip, clip, out=torch.zeros(2, 7, 4), offsets=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="one start per row"):
        function(clip, clip, out=torch.zeros(2, 7, 4), offsets=torch.tensor([0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_additive_matches_reference(dtype, rng, interpreter):
    shape = (2, 7, 45)  # 630 elements: three 256-blocks, the last partial
    clip = torch.randn(shape, generator=rng).to(dtype)
    dino = torch.randn(shape, generator=rng).to(dtype)
    upstream = torch.randn(shape, generator=rng).to(dtype)
    alpha = float(torch.rand((), generator=rng))
    results = []
    for function in (mof_additive, mof_additive_reference):
        leaves = (clip.clone().requires_grad_(True), dino.clone().requires_grad_(True))
        mixed = function(*leaves, alpha)
        results.append((mixed, torch.autograd.grad((mixed * upstream).sum(), leaves)))
    (ours, ours_grads), (ref, ref_grads) = results
    tolerance = (
        {"atol": 0, "rtol": 1e-6} if dtype == torch.float32 else {"atol": 1e-2, "rtol": 1e-2}
    )
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, ref, **tolerance)
    for ours_grad, ref_grad in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(ours_grad, ref_grad, **tolerance)


def test_additive_endpoints_and_errors():
    clip, dino = torch.ones(3), torch.zeros(3)
    assert mof_additive(clip, dino, 1.0).tolist() == [1.0, 1.0, 1.0]
    assert mof_additive(clip, dino, 0.25).tolist() == [0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        mof_additive(clip, dino, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        mof_additive(clip, torch.zeros(4), 0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_kernels_on_cuda(rng):
    """Compiled Triton at LLaVA-NeXT size (CPU siblings: the interpreter tests above)."""
    clip = torch.randn(4, 576, 4096, generator=rng).cuda().requires_grad_(True)
    dino = torch.randn(4, 576, 4096, generator=rng).cuda().requires_grad_(True)
    buffer = torch.randn(4, 1500, 4096, generator=rng).cuda()
    offsets = torch.tensor([5, 100, 0, 300], device="cuda")
    ours = mof_interleave(clip, dino, out=buffer.clone(), offsets=offsets)
    ref = mof_interleave_reference(clip, dino, out=buffer.clone(), offsets=offsets)
    torch.testing.assert_close(ours, ref, atol=0, rtol=0)
    torch.testing.assert_close(
        mof_additive(clip, dino, 0.3), mof_additive_reference(clip, dino, 0.3)
    )
