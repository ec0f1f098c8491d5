"""Backend choice shared by the kernel modules.

Rule (DESIGN.md): Triton on CUDA tensors; the Triton interpreter on CPU tensors when the
environment variable ``TRITON_INTERPRET=1`` is set; the PyTorch reference otherwise.

Triton fixes the interpreter-or-compiler choice when ``@triton.jit`` runs, which would tie
it to the moment a kernel module is first imported. :class:`LazyKernel` instead keeps the
plain Python function and builds the compiled or the interpreted kernel on first use, so
setting ``TRITON_INTERPRET=1`` after ``import vlrl.triton_kernels`` (a test fixture, a
benchmark flag) still takes effect.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # triton ships for Linux only; the reference path still works
    triton = None
    # Kernel signatures annotate constexpr arguments; a stand-in keeps them importable.
    tl = types.SimpleNamespace(constexpr=object)
    HAS_TRITON = False

Backend = Literal["triton", "interpreter", "reference"]
BACKENDS: tuple[Backend, ...] = ("triton", "interpreter", "reference")

_forced_backend: Backend | None = None


def interpreter_requested() -> bool:
    """True when ``TRITON_INTERPRET=1`` is set in the environment right now."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def choose_backend(*tensors: torch.Tensor) -> Backend:
    """The backend the dispatch rule picks for these input tensors."""
    if _forced_backend is not None:
        return _forced_backend
    if not HAS_TRITON:
        return "reference"
    if interpreter_requested():
        return "interpreter"
    if all(t.is_cuda for t in tensors):
        return "triton"
    return "reference"


@contextlib.contextmanager
def force_backend(backend: Backend | None) -> Iterator[None]:
    """Run the enclosed calls on one backend (tests and benchmarks); ``None`` restores the rule.

    Forcing "interpreter" also sets ``TRITON_INTERPRET=1`` for the duration, since Triton's
    own launch code consults it.
    """
    global _forced_backend
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; expected one of {BACKENDS}")
    if backend in ("triton", "interpreter") and not HAS_TRITON:
        raise RuntimeError(f"kernel backend {backend!r} needs triton, which is not installed")
    previous_backend = _forced_backend
    previous_env = os.environ.get("TRITON_INTERPRET")
    _forced_backend = backend
    if backend == "interpreter":
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        _forced_backend = previous_backend
        if backend == "interpreter":
            if previous_env is None:
                os.environ.pop("TRITON_INTERPRET", None)
            else:
                os.environ["TRITON_INTERPRET"] = previous_env


class LazyKernel:
    """A ``@triton.jit`` kernel built on first launch, compiled or interpreted as the backend says.

    Made by :func:`lazy_jit` on a module-level function; launched as
    ``kernel.launcher(backend)[grid](*args, **constants)``.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._built: dict[bool, Any] = {}
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def launcher(self, backend: Backend) -> Any:
        """The object to index with the grid and call: ``kernel.launcher(b)[grid](*args)``."""
        if backend == "reference":
            raise ValueError("the reference backend has no Triton kernel")
        interpreted = backend == "interpreter"
        if interpreted not in self._built:
            if interpreted:
                from triton.runtime.interpreter import InterpretedFunction

                self._built[True] = _InterpretedLauncher(InterpretedFunction(self.fn))
            else:
                from triton.runtime.jit import JITFunction

                self._built[False] = JITFunction(self.fn)
        return self._built[interpreted]


class _InterpretedLauncher:
    """Runs an interpreted kernel with an interpretable ``triton.language``.

    Triton builds its own library functions (``tl.sum``, ``tl.max``, ``tl.cdiv``, ...) as
    compiled-mode objects when it is imported without ``TRITON_INTERPRET=1`` (transformers
    imports triton early, so that is the usual case in a test session), and the interpreter
    refuses to call those. For the duration of an interpreted launch the ``tl`` names that
    are compiled-mode functions point at interpreted twins, then are put back.
    """

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def __getitem__(self, grid: Any) -> Callable[..., Any]:
        def launch(*args: Any, **kwargs: Any) -> Any:
            with _interpretable_language():
                return self.kernel[grid](*args, **kwargs)

        return launch


_interpreted_twins: dict[str, Any] = {}


@contextlib.contextmanager
def _interpretable_language() -> Iterator[None]:
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    swapped: dict[str, Any] = {}
    for name in dir(tl):
        value = getattr(tl, name)
        if isinstance(value, JITFunction):
            if name not in _interpreted_twins:
                _interpreted_twins[name] = InterpretedFunction(value.fn)
            swapped[name] = value
            setattr(tl, name, _interpreted_twins[name])
    try:
        yield
    finally:
        for name, value in swapped.items():
            setattr(tl, name, value)


def launch_options(backend: Backend, **gpu_options: int) -> dict[str, Any]:
    """Keyword options for a launch: none in the interpreter; on GPU ``gpu_options`` plus
    FMA contraction stated explicitly (Triton 3.9 warns that its default will change)."""
    if backend == "interpreter":
        return {}
    return {"enable_fp_fusion": True, **gpu_options}


def cdiv(numerator: int, denominator: int) -> int:
    """Ceiling division of positive ints (grid sizes); works without triton installed."""
    return -(-numerator // denominator)


def lazy_jit(fn: Callable[..., Any]) -> LazyKernel:
    """Decorator: mark ``fn`` as a Triton kernel built lazily (see :class:`LazyKernel`)."""
    return LazyKernel(fn)
