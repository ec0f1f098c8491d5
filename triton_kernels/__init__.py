"""Fused kernels of vlrl (installed as ``vlrl.triton_kernels``).

Each public function dispatches (DESIGN.md): Triton on CUDA tensors, the Triton
interpreter when ``TRITON_INTERPRET=1`` is set, the PyTorch reference otherwise. The
references (``*_reference``) are exported too: they are the ground truth in tests and
the baselines in ``bench/kernels.py``.
"""

from ._dispatch import HAS_TRITON, choose_backend, force_backend
from .gae import gae, gae_reference
from .mof import mof_additive, mof_additive_reference, mof_interleave, mof_interleave_reference
from .segment_logprob import (
    ACTION,
    IGNORE,
    THOUGHT,
    SegmentLogprob,
    segment_logprob,
    segment_logprob_from_hidden,
    segment_logprob_from_hidden_reference,
    segment_logprob_reference,
    segment_weights,
)

__all__ = [
    "ACTION",
    "HAS_TRITON",
    "IGNORE",
    "THOUGHT",
    "SegmentLogprob",
    "choose_backend",
    "force_backend",
    "gae",
    "gae_reference",
    "mof_additive",
    "mof_additive_reference",
    "mof_interleave",
    "mof_interleave_reference",
    "segment_logprob",
    "segment_logprob_from_hidden",
    "segment_logprob_from_hidden_reference",
    "segment_logprob_reference",
    "segment_weights",
]
