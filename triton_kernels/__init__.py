"""Triton kernels of vlrl (installed as ``vlrl.triton_kernels``)."""
