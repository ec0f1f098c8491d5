"""Segment log-prob: Triton kernels (interpreter on CPU, compiled on CUDA) vs the reference.

Tolerances (ours vs reference, both accumulate in fp32):
- float32 logits: outputs atol 2e-5 / rtol 1e-5 (only summation order differs);
  gradients atol 1e-5 / rtol 1e-4 (at temperature 0.2 the scaled logits reach ~30, and
  the entropy gradient multiplies log p by p).
- bfloat16 / float16 logits: outputs atol 1e-4 / rtol 1e-5 (same fp32 arithmetic on the
  same rounded inputs); gradients are stored in the logits' dtype, so they may differ by
  one rounding step: atol 1e-5 / rtol 1e-2.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys

import pytest
import torch
from vlrl.triton_kernels import (
    ACTION,
    IGNORE,
    THOUGHT,
    SegmentLogprob,
    choose_backend,
    segment_logprob,
    segment_logprob_from_hidden,
    segment_logprob_from_hidden_reference,
    segment_logprob_reference,
)

# The package re-exports the function under the module's name, so fetch the module itself.
segment_module = importlib.import_module("vlrl.triton_kernels.segment_logprob")

TOLERANCES = {
    torch.float32: {"out": (2e-5, 1e-5), "grad": (1e-5, 1e-4)},
    torch.bfloat16: {"out": (1e-4, 1e-5), "grad": (1e-5, 1e-2)},
    torch.float16: {"out": (1e-4, 1e-5), "grad": (1e-5, 1e-2)},
}

# V = 1003 with the interpreter's 256-wide blocks: four blocks, the last one partial.
BATCH, TIME, VOCAB = 3, 7, 1003


def _close(actual: torch.Tensor, expected: torch.Tensor, tolerance: tuple[float, float]) -> None:
    atol, rtol = tolerance
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol)


def _loss_and_grads(
    result: SegmentLogprob,
    inputs: tuple[torch.Tensor, ...],
    upstream: dict[str, torch.Tensor],
    entropy_grad: bool,
) -> tuple[torch.Tensor, ...]:
    loss = (result.logprob * upstream["logprob"]).sum()
    loss = loss + (result.token_logprobs * upstream["tokens"]).sum()
    if entropy_grad:
        loss = loss + (result.entropy * upstream["entropy"]).sum()
    return torch.autograd.grad(loss, inputs)


def _upstream(rng: torch.Generator, batch: int, time: int) -> dict[str, torch.Tensor]:
    return {
        "logprob": torch.randn(batch, generator=rng),
        "tokens": torch.randn(batch, time, generator=rng),
        "entropy": torch.randn(batch, time, generator=rng),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [1.0, 0.2])
@pytest.mark.parametrize("entropy_grad", [True, False])
def test_logits_kernel_matches_reference(
    dtype, temperature, entropy_grad, rng, interpreter, random_segments, random_targets
):
    scale = 4.0 if dtype == torch.float16 else 3.0
    logits = (torch.randn(BATCH, TIME, VOCAB, generator=rng) * scale).to(dtype)
    # Row 1 is all IGNORE: zero log-prob, zero entropy, zero gradient.
    segments = random_segments(BATCH, TIME, rng, all_ignore_rows=(1,))
    targets = random_targets(segments, VOCAB, rng)
    lam = float(torch.rand((), generator=rng))
    upstream = _upstream(rng, BATCH, TIME)

    ours_in = logits.clone().requires_grad_(True)
    ours = segment_logprob(ours_in, targets, segments, lam, temperature, return_token_logprobs=True)
    assert ours.logprob.grad_fn is not None
    assert "TokenLogprobFunction" in type(ours.token_logprobs.grad_fn).__name__
    (ours_grad,) = _loss_and_grads(ours, (ours_in,), upstream, entropy_grad)

    ref_in = logits.clone().requires_grad_(True)
    ref = segment_logprob_reference(
        ref_in, targets, segments, lam, temperature, return_entropy=True
    )
    (ref_grad,) = _loss_and_grads(ref, (ref_in,), upstream, entropy_grad)

    tol = TOLERANCES[dtype]
    for name in SegmentLogprob._fields:
        _close(getattr(ours, name), getattr(ref, name), tol["out"])
    assert ours_grad.dtype == dtype
    _close(ours_grad, ref_grad, tol["grad"])
    assert torch.all(ours.token_logprobs[segments == IGNORE] == 0)
    assert torch.all(ours.entropy[segments == IGNORE] == 0)
    assert torch.all(ours.logprob[1] == 0)
    assert torch.all(ours_grad[1] == 0)


def test_shifted_view_without_copy(rng, interpreter, random_segments, random_targets):
    """A caller's shift ``logits[:, :-1]`` (non-contiguous) works and grads reach the base."""
    base = torch.randn(2, TIME + 1, VOCAB, generator=rng, requires_grad=True)
    segments = random_segments(2, TIME, rng)
    targets = random_targets(segments, VOCAB, rng)
    view = base[:, :-1]
    assert not view.is_contiguous()
    ours = segment_logprob(view, targets, segments, 0.5, 0.7)
    (ours_grad,) = torch.autograd.grad(ours.sum(), base)
    ref = segment_logprob_reference(base[:, :-1], targets, segments, 0.5, 0.7)
    (ref_grad,) = torch.autograd.grad(ref.sum(), base)
    _close(ours, ref, TOLERANCES[torch.float32]["out"])
    _close(ours_grad, ref_grad, TOLERANCES[torch.float32]["grad"])
    assert torch.all(ours_grad[:, -1] == 0)


def test_entropy_only_gradient(rng, interpreter, random_segments, random_targets):
    logits = torch.randn(2, TIME, VOCAB, generator=rng)
    segments = random_segments(2, TIME, rng)
    targets = random_targets(segments, VOCAB, rng)
    grads = []
    for function in (segment_logprob, segment_logprob_reference):
        leaf = logits.clone().requires_grad_(True)
        result = function(leaf, targets, segments, 0.5, 1.0, return_entropy=True)
        grads.append(torch.autograd.grad(result.entropy.sum(), leaf)[0])
    _close(grads[0], grads[1], TOLERANCES[torch.float32]["grad"])
    assert grads[0].abs().sum() > 0


def test_suppressed_tokens_stay_finite(rng, interpreter):
    """Whole -inf vocabulary blocks (suppressed special tokens) give finite results."""
    logits = torch.randn(2, 5, VOCAB, generator=rng)
    logits[:, :, :300] = float("-inf")  # the first block and part of the second
    segments = torch.full((2, 5), ACTION, dtype=torch.int8)
    targets = torch.randint(300, VOCAB, (2, 5), generator=rng)
    results = []
    for function in (segment_logprob, segment_logprob_reference):
        leaf = logits.clone().requires_grad_(True)
        result = function(leaf, targets, segments, 0.5, 1.0, return_entropy=True)
        grad = torch.autograd.grad(result.logprob.sum() + result.entropy.sum(), leaf)[0]
        results.append((result, grad))
    (ours, ours_grad), (ref, ref_grad) = results
    assert torch.isfinite(ours.entropy).all() and torch.isfinite(ours_grad).all()
    _close(ours.entropy, ref.entropy, TOLERANCES[torch.float32]["out"])
    _close(ours.logprob, ref.logprob, TOLERANCES[torch.float32]["out"])
    _close(ours_grad, ref_grad, TOLERANCES[torch.float32]["grad"])
    assert torch.all(ours_grad[:, :, :300] == 0)


def test_reference_on_a_hand_example():
    """Uniform logits over 4 tokens: log p = -ln 4 per token, entropy ln 4."""
    logits = torch.zeros(1, 4, 4)
    segments = torch.tensor([[IGNORE, THOUGHT, THOUGHT, ACTION]], dtype=torch.int8)
    targets = torch.tensor([[-100, 1, 2, 3]])
    result = segment_logprob_reference(logits, targets, segments, 0.5, 0.3, True, True)
    # lam * (2 thought tokens) + 1 action token = 2 tokens' worth of -ln 4.
    assert result.logprob.item() == pytest.approx(-2 * math.log(4), abs=1e-6)
    assert result.token_logprobs[0, 0].item() == 0.0
    assert result.entropy[0, 1:].tolist() == pytest.approx([math.log(4)] * 3, abs=1e-6)
    # Temperature sharpens: logits (0, 1) at temperature 0.5 -> p(1) = e^2 / (1 + e^2).
    two = torch.tensor([[[0.0, 1.0]]])
    sharp = segment_logprob_reference(two, torch.tensor([[1]]), torch.tensor([[2]]), 0.5, 0.5)
    assert sharp.item() == pytest.approx(math.log(math.e**2 / (1 + math.e**2)), abs=1e-6)


def test_public_function_follows_env_rule(monkeypatch, rng, random_segments, random_targets):
    """CPU tensors: reference without TRITON_INTERPRET, the interpreted kernel with it."""
    logits = torch.randn(2, 3, 50, generator=rng, requires_grad=True)
    segments = random_segments(2, 3, rng)
    targets = random_targets(segments, 50, rng)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert choose_backend(logits) == "reference"
    reference = segment_logprob(logits, targets, segments, 0.5)
    assert "TokenLogprobFunction" not in type(reference.grad_fn).__name__
    if not segment_module.HAS_TRITON:
        return
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert choose_backend(logits) == "interpreter"
    kernel = segment_logprob(logits, targets, segments, 0.5, return_token_logprobs=True)
    assert "TokenLogprobFunction" in type(kernel.token_logprobs.grad_fn).__name__
    _close(kernel.logprob, reference, TOLERANCES[torch.float32]["out"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("train_head", [True, False])
def test_from_hidden_matches_reference(
    dtype, train_head, monkeypatch, rng, interpreter, random_segments, random_targets
):
    """Chunked from-hidden path vs the whole-logits reference.

    The reference runs in fp32 on the same (rounded) inputs. float32: outputs atol 1e-4,
    gradients atol 2e-5 / rtol 1e-4 (the matmuls sum over H and V in another order).
    bfloat16: our per-chunk logits are rounded to bf16 (|logit| ~ 4 -> error ~ 0.016), so
    outputs atol 0.1 and gradients within 3% in norm (single entries can cancel).
    """
    width = 24
    # Three tokens per chunk, so the active tokens span several chunks, the last partial.
    monkeypatch.setattr(segment_module, "FROM_HIDDEN_CHUNK_ELEMENTS", 3 * VOCAB)
    hidden = torch.randn(BATCH, TIME, width, generator=rng).to(dtype)
    weight = (torch.randn(VOCAB, width, generator=rng) / math.sqrt(width) * 4).to(dtype)
    segments = random_segments(BATCH, TIME, rng, all_ignore_rows=(2,))
    targets = random_targets(segments, VOCAB, rng)
    upstream = _upstream(rng, BATCH, TIME)

    results = []
    for function, input_dtype in (
        (segment_logprob_from_hidden, dtype),
        (segment_logprob_from_hidden_reference, torch.float32),
    ):
        hidden_leaf = hidden.to(input_dtype).requires_grad_(True)
        weight_leaf = weight.to(input_dtype).requires_grad_(train_head)
        inputs = (hidden_leaf, weight_leaf) if train_head else (hidden_leaf,)
        result = function(hidden_leaf, weight_leaf, targets, segments, 0.5, 0.8, True, True)
        results.append((result, _loss_and_grads(result, inputs, upstream, True)))
    (ours, ours_grads), (ref, ref_grads) = results

    out_tol = (1e-4, 1e-5) if dtype == torch.float32 else (1e-1, 1e-2)
    for name in SegmentLogprob._fields:
        _close(getattr(ours, name), getattr(ref, name), out_tol)
    for ours_grad, ref_grad in zip(ours_grads, ref_grads, strict=True):
        assert ours_grad.dtype == dtype
        if dtype == torch.float32:
            _close(ours_grad, ref_grad, (2e-5, 1e-4))
        else:
            error = (ours_grad.float() - ref_grad).norm() / ref_grad.norm()
            assert error < 3e-2, f"relative gradient error {error:.3g}"
    assert torch.all(ours_grads[0][2] == 0)


def test_from_hidden_all_ignored(rng, interpreter):
    hidden = torch.randn(2, 4, 8, generator=rng, requires_grad=True)
    weight = torch.randn(VOCAB, 8, generator=rng, requires_grad=True)
    segments = torch.zeros(2, 4, dtype=torch.int8)
    targets = torch.full((2, 4), -100)
    result = segment_logprob_from_hidden(hidden, weight, targets, segments, 0.5)
    assert torch.all(result == 0)
    grad_hidden, grad_weight = torch.autograd.grad(result.sum(), (hidden, weight))
    assert torch.all(grad_hidden == 0) and torch.all(grad_weight == 0)


@pytest.mark.parametrize("function", [segment_logprob, segment_logprob_reference])
def test_bad_inputs_are_named(function):
    logits = torch.randn(1, 3, 10)
    segments = torch.tensor([[0, 1, 2]], dtype=torch.int8)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        function(logits, torch.tensor([[-100, 3, 10]]), segments, 0.5)
    with pytest.raises(ValueError, match="segment_ids must hold"):
        function(logits, torch.tensor([[0, 3, 4]]), segments + 1, 0.5)
    with pytest.raises(ValueError, match=r"logits must be \[B, T, V\]"):
        function(logits[0], torch.tensor([[0, 3, 4]]), segments, 0.5)
    with pytest.raises(ValueError, match="targets must be"):
        function(logits, torch.tensor([0, 3, 4]), segments, 0.5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        function(logits, torch.tensor([[0, 3, 4]]), segments, 0.5, 0.0)
    # An out-of-range target on an IGNORE token is fine (HF's -100 convention).
    assert torch.isfinite(function(logits, torch.tensor([[-100, 3, 4]]), segments, 0.5)).all()


def test_from_hidden_shape_errors():
    with pytest.raises(ValueError, match="lm_head_weight must be"):
        segment_logprob_from_hidden(
            torch.randn(1, 2, 8),
            torch.randn(10, 7),
            torch.zeros(1, 2, dtype=torch.long),
            torch.ones(1, 2, dtype=torch.int8),
            0.5,
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_kernel_on_cuda(dtype, rng, random_segments, random_targets):
    """Compiled Triton at a real vocabulary size (CPU sibling: the interpreter tests)."""
    batch, time, vocab = 4, 64, 32064
    logits = (torch.randn(batch, time, vocab, generator=rng) * 3).to(dtype).cuda()
    segments = random_segments(batch, time, rng, all_ignore_rows=(3,)).cuda()
    targets = random_targets(segments, vocab, rng).cuda()
    upstream = {k: v.cuda() for k, v in _upstream(rng, batch, time).items()}
    outs = []
    for function in (segment_logprob, segment_logprob_reference):
        leaf = logits.clone().requires_grad_(True)
        result = function(leaf, targets, segments, 0.5, 0.2, True, True)
        outs.append((result, _loss_and_grads(result, (leaf,), upstream, True)[0]))
    (ours, ours_grad), (ref, ref_grad) = outs
    tol = TOLERANCES[dtype]
    for name in SegmentLogprob._fields:
        _close(getattr(ours, name), getattr(ref, name), (tol["out"][0] * 10, tol["out"][1]))
    _close(ours_grad, ref_grad, tol["grad"])


_STARTUP_SCRIPT = """
import torch
from vlrl.triton_kernels import (
    choose_backend, gae, gae_reference, mof_interleave, mof_interleave_reference,
    segment_logprob, segment_logprob_reference,
)
logits = torch.randn(2, 5, 300, requires_grad=True)
segments = torch.tensor([[0, 1, 1, 2, 2], [0, 0, 0, 0, 0]], dtype=torch.int8)
targets = torch.randint(0, 300, (2, 5))
assert choose_backend(logits) == "interpreter"
ours = segment_logprob(logits, targets, segments, 0.5, 0.7, return_entropy=True)
assert "TokenLogprobFunction" in type(ours.entropy.grad_fn).__name__
ref = segment_logprob_reference(logits, targets, segments, 0.5, 0.7, return_entropy=True)
for a, b in zip(ours, ref):
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
grads = [torch.autograd.grad(r.logprob.sum() + r.entropy.sum(), logits)[0] for r in (ours, ref)]
torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
rewards, values, dones = torch.randn(6, 3), torch.randn(7, 3), torch.rand(6, 3) < 0.3
torch.testing.assert_close(gae(rewards, values, dones, 0.9, 0.95),
                           gae_reference(rewards, values, dones, 0.9, 0.95))
clip, dino = torch.randn(2, 3, 40), torch.randn(2, 3, 40)
torch.testing.assert_close(mof_interleave(clip, dino), mof_interleave_reference(clip, dino))
print("interpreter-at-startup ok")
"""


@pytest.mark.skipif(not segment_module.HAS_TRITON, reason="triton is not installed here")
def test_interpreter_set_before_import():
    """The documented way, ``TRITON_INTERPRET=1`` in the environment of a fresh process."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _STARTUP_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "interpreter-at-startup ok" in done.stdout
