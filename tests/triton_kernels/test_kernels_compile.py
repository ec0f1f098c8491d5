"""Every kernel compiles for an H100 (sm_90) with the launch constants the GPU path uses.

No GPU is needed: Triton's NVIDIA backend and its bundled ptxas run on the CPU. This
catches what the interpreter cannot (typing of loop-carried values, constexpr branches,
the scan's combine function, register pressure failures) before a device is available.
"""

from __future__ import annotations

import importlib

import pytest
from vlrl.triton_kernels import HAS_TRITON

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed here")

segment_module = importlib.import_module("vlrl.triton_kernels.segment_logprob")
gae_module = importlib.import_module("vlrl.triton_kernels.gae")
mof_module = importlib.import_module("vlrl.triton_kernels.mof")

_ROW = {
    "targets_ptr": "*i64",
    "targets_stride_b": "i64",
    "targets_stride_t": "i64",
    "segments_ptr": "*i8",
    "segments_stride_b": "i64",
    "segments_stride_t": "i64",
}


def _cases():
    for dtype in ("*bf16", "*fp32"):
        logits = {"logits_ptr": dtype, "logits_stride_b": "i64", "logits_stride_t": "i64"}
        scalars = {"T": "i32", "V": "i32", "inv_temperature": "fp32"}
        forward = {**logits, **_ROW, "token_logp_ptr": "*fp32", "entropy_ptr": "*fp32"}
        forward.update(lse_ptr="*fp32", **scalars)
        yield (
            segment_module._segment_logprob_forward_kernel,
            forward,
            {"BLOCK_V": segment_module.GPU_BLOCK_V},
            {"num_warps": segment_module.GPU_NUM_WARPS},
        )
        backward = {**logits, **_ROW, "lse_ptr": "*fp32", "entropy_ptr": "*fp32"}
        backward.update(grad_logp_ptr="*fp32", grad_entropy_ptr="*fp32", grad_logits_ptr=dtype)
        backward.update(scalars)
        for entropy_grad in (True, False):
            yield (
                segment_module._segment_logprob_backward_kernel,
                backward,
                {"HAS_ENTROPY_GRAD": entropy_grad, "BLOCK_V": segment_module.GPU_BLOCK_V},
                {"num_warps": segment_module.GPU_NUM_WARPS},
            )
        tokens = {"N": "i32", "D": "i32"}
        scatter = {"clip_ptr": dtype, "dino_ptr": dtype, "out_ptr": dtype, "offsets_ptr": "*i64"}
        scatter.update(tokens)
        for name in ("clip", "dino", "out"):
            scatter[f"{name}_stride_b"] = "i64"
            scatter[f"{name}_stride_{'l' if name == 'out' else 'n'}"] = "i64"
        yield mof_module._interleave_scatter_kernel, scatter, {"BLOCK_D": 1024}, {}
        gather = {"grad_out_ptr": dtype, "grad_clip_ptr": dtype, "grad_dino_ptr": dtype}
        gather.update(grad_buffer_ptr=dtype, offsets_ptr="*i64", **tokens)
        gather.update(grad_out_stride_b="i64", grad_out_stride_l="i64")
        gather.update(grad_buffer_stride_b="i64", grad_buffer_stride_l="i64")
        for zero in (True, False):
            yield (
                mof_module._interleave_gather_kernel,
                gather,
                {"ZERO_BUFFER": zero, "BLOCK_D": 1024},
                {},
            )
        mix = {"a_ptr": dtype, "b_ptr": dtype, "out_ptr": dtype, "numel": "i64", "alpha": "fp32"}
        yield mof_module._additive_kernel, mix, {"BLOCK": mof_module.GPU_ADDITIVE_BLOCK}, {}
        mix_back = {"grad_ptr": dtype, "grad_a_ptr": dtype, "grad_b_ptr": dtype}
        mix_back.update(numel="i64", alpha="fp32")
        yield (
            mof_module._additive_backward_kernel,
            mix_back,
            {"BLOCK": mof_module.GPU_ADDITIVE_BLOCK},
            {},
        )
    gae_signature = {
        name: "*fp32"
        for name in ("rewards_ptr", "values_ptr", "dones_ptr", "advantages_ptr", "returns_ptr")
    }
    gae_signature.update(T="i32", N="i32", gamma="fp32", gae_lambda="fp32")
    yield (
        gae_module._gae_kernel,
        gae_signature,
        {"BLOCK_T": gae_module.GPU_BLOCK_T, "BLOCK_N": gae_module.GPU_BLOCK_N},
        {},
    )


CASES = list(_cases()) if HAS_TRITON else []


@pytest.mark.parametrize(
    "kernel, signature, constants, options",
    CASES,
    ids=[f"{c[0].__name__}-{next(iter(c[1].values()))}-{c[2]}" for c in CASES],
)
def test_kernel_compiles_for_sm90(kernel, signature, constants, options):
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler.compiler import ASTSource, compile
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction
    except ImportError as error:  # pragma: no cover - depends on the triton build
        pytest.skip(f"this triton build cannot compile ahead of time: {error}")
    import triton.language as tl

    if isinstance(tl.sum, InterpretedFunction):
        pytest.skip("triton was imported with TRITON_INTERPRET=1; its library is interpreted")
    assert set(signature) | set(constants) == set(JITFunction(kernel.fn).arg_names)
    full_signature = {**signature, **dict.fromkeys(constants, "constexpr")}
    source = ASTSource(JITFunction(kernel.fn), full_signature, constants)
    options = {"enable_fp_fusion": True, **options}  # as launch_options() sets it on GPU
    compiled = compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert f".entry {kernel.__name__}" in compiled.asm["ptx"]
    assert len(compiled.asm["cubin"]) > 0
