"""Kernel microbenchmarks: vlrl.triton_kernels vs the naive PyTorch forms, side by side.

Per kernel, forward + backward where the kernel is differentiable:

* segment log-prob from logits: ours vs ``log_softmax`` + ``gather`` + masked sums
  (autograd backward), with and without the entropy bonus; B*T = 8192 tokens,
  V = 32064 (LLaVA-NeXT-Mistral) and V = 128256 (Llama 3.2), bf16 logits.
* segment log-prob from hidden states: ours (chunked, logits never whole) vs
  ``hidden @ W.T`` then the naive form; H = 4096, frozen LM head (LoRA) so only the
  hidden states get gradients.
* GAE at T = 512, N = 4096: ours vs the CleanRL loop (reversed over time, vectorised
  over envs), a loop-free vectorised torch scan (log2 T doubling steps), and a plain
  Python loop over floats.
* MoF: interleaved merge into an input-embeddings buffer vs stack + reshape + cat (also
  with the two linear adapters in front), and the additive mix vs ``a*x + (1-a)*y``.

On CUDA the timing is CUDA events (median of --repeats after warm-up), memory is the peak
allocated beyond the inputs, and memory-bound kernels get their achieved bandwidth next
to the device's measured copy bandwidth (``dst.copy_(src)`` of 1 GiB) and the ratio to
that floor. On CPU (no CUDA) the dispatcher picks the PyTorch reference, so "ours" is
the reference path at small sizes: the script is exercised in CI, the figures are not
the GPU targets; memory is not measured on CPU.

With ``TRITON_INTERPRET=1`` on CPU, "ours" runs the Triton kernels in the interpreter:
slow, but it checks the kernels against the baselines end to end (the max-diff fields).

Prints a table and one JSON line. Usage:
``python bench/kernels.py [--quick] [--repeats N] [--only segment,hidden,gae,mof]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from vlrl.triton_kernels import (
    choose_backend,
    gae,
    gae_reference,
    mof_additive,
    mof_interleave,
    segment_logprob,
    segment_logprob_from_hidden,
)

MiB = 2**20


# ----------------------------------------------------------------------------------------
# Naive baselines (the forms common training code writes)
# ----------------------------------------------------------------------------------------


def naive_segment_logprob(logits, targets, segments, lam, temperature, with_entropy):
    """log_softmax + gather + masked sums; entropy as -(p * log p).sum(-1)."""
    log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)
    active = segments != 0
    token_logp = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    token_logp = token_logp * active
    weights = torch.where(segments == 1, lam, 1.0) * active
    logprob = (token_logp * weights).sum(-1)
    if not with_entropy:
        return logprob, None
    entropy = -(log_probs.exp() * log_probs).sum(-1) * active
    return logprob, entropy


def gae_cleanrl_loop(rewards, values, dones, gamma, lam):
    """CleanRL's reversed lastgaelam loop (tensor ops over envs, one step at a time)."""
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(rewards[0])
    not_done = 1.0 - dones.float()
    for t in reversed(range(steps)):
        delta = rewards[t] + gamma * values[t + 1] * not_done[t] - values[t]
        lastgaelam = delta + gamma * lam * not_done[t] * lastgaelam
        advantages[t] = lastgaelam
    return advantages, advantages + values[:-1]


def gae_vectorised_scan(rewards, values, dones, gamma, lam):
    """Loop-free over time except log2(T) doubling steps of the affine-map scan."""
    not_done = 1.0 - dones.float()
    offset = rewards + gamma * values[1:] * not_done - values[:-1]
    scale = gamma * lam * not_done
    steps, shift = rewards.shape[0], 1
    while shift < steps:
        # A_t = offset_t + scale_t * A_{t+shift}: compose each map with the one `shift` later.
        offset = torch.cat((offset[:-shift] + scale[:-shift] * offset[shift:], offset[-shift:]))
        scale = torch.cat((scale[:-shift] * scale[shift:], torch.zeros_like(scale[-shift:])))
        shift *= 2
    return offset, offset + values[:-1]


def gae_python_loop(rewards, values, dones, gamma, lam):
    """The same loop on plain Python floats, env by env."""
    r, v, d = rewards.tolist(), values.tolist(), dones.float().tolist()
    steps, envs = len(r), len(r[0])
    advantages = [[0.0] * envs for _ in range(steps)]
    for env in range(envs):
        last = 0.0
        for t in range(steps - 1, -1, -1):
            not_done = 1.0 - d[t][env]
            delta = r[t][env] + gamma * v[t + 1][env] * not_done - v[t][env]
            last = delta + gamma * lam * not_done * last
            advantages[t][env] = last
    adv = torch.tensor(advantages, dtype=torch.float32)
    return adv, adv + values[:-1].cpu()


def naive_interleave_cat(clip, dino, prefix, suffix):
    """stack + reshape, then cat with the text embeddings around the image tokens."""
    batch, tokens, width = clip.shape
    merged = torch.stack((clip, dino), dim=2).reshape(batch, 2 * tokens, width)
    return torch.cat((prefix, merged, suffix), dim=1)


# ----------------------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------------------


@dataclass
class Row:
    kernel: str
    case: str
    variant: str
    ms: float
    peak_mib: float | None
    moved_bytes: float | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {
            "kernel": self.kernel,
            "case": self.case,
            "variant": self.variant,
            "ms": round(self.ms, 4),
            "peak_mib": None if self.peak_mib is None else round(self.peak_mib, 1),
        }
        out.update(self.extra)
        return out


def measure(
    fn: Callable[[], object], device: torch.device, repeats: int
) -> tuple[float, float | None]:
    """Milliseconds of ``fn()`` (CUDA: median; CPU: fastest) and its extra peak allocation."""
    fn()  # warm-up: compiles Triton kernels, fills caches
    if device.type == "cuda":
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop))
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - before) / MiB
        return statistics.median(times), peak
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    # The CPU is shared with other jobs: the fastest run is the least disturbed one.
    return min(times), None


def copy_bandwidth(device: torch.device) -> float | None:
    """Measured device copy bandwidth in bytes/s (read + write of 1 GiB); None on CPU."""
    if device.type != "cuda":
        return None
    src = torch.empty(2**28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms, _ = measure(lambda: dst.copy_(src), device, 20)
    return 2 * src.numel() * 4 / (ms / 1e3)


def random_segments(batch: int, time_steps: int, device: torch.device) -> torch.Tensor:
    """Ragged outputs: each row active for 60-100% of T (thought then a 4-token action)."""
    lengths = torch.randint(int(0.6 * time_steps), time_steps + 1, (batch,))
    segments = torch.zeros(batch, time_steps, dtype=torch.int8)
    for row, length in enumerate(lengths.tolist()):
        segments[row, : max(length - 4, 0)] = 1
        segments[row, max(length - 4, 0) : length] = 2
    return segments.to(device)


# ----------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------


def _segment_case(logits, targets, segments, upstream, with_entropy, repeats) -> list[Row]:
    dtype = str(logits.dtype).split(".")[-1]
    batch, time_steps, vocab = logits.shape
    case = f"B*T={batch * time_steps} V={vocab} {dtype}" + (" +entropy" if with_entropy else "")

    def ours():
        result = segment_logprob(logits, targets, segments, 0.5, 0.2, return_entropy=with_entropy)
        if with_entropy:
            loss = result.logprob @ upstream + result.entropy.sum() * 0.01
        else:
            loss = result @ upstream
        return torch.autograd.grad(loss, logits)[0]

    def naive():
        logprob, entropy = naive_segment_logprob(logits, targets, segments, 0.5, 0.2, with_entropy)
        loss = logprob @ upstream
        if with_entropy:
            loss = loss + entropy.sum() * 0.01
        return torch.autograd.grad(loss, logits)[0]

    diff = (ours().float() - naive().float()).abs().max().item()
    # Floor: the forward reads the logits, the backward reads them again and writes their
    # gradient (ignored rows are skipped, so this slightly overstates the bytes).
    moved = 3 * logits.numel() * logits.element_size()
    rows = []
    for variant, fn in (("ours", ours), ("naive torch", naive)):
        ms, peak = measure(fn, logits.device, repeats)
        extra = {"max_abs_diff_grad": diff} if variant == "ours" else {}
        rows.append(Row("segment_logprob", case, variant, ms, peak, moved, extra))
    return rows


def bench_segment(sizes, device, dtype, repeats) -> list[Row]:
    rows = []
    batch, time_steps = sizes["segment_bt"]
    for vocab in sizes["vocabs"]:
        logits = torch.randn(batch, time_steps, vocab, device=device, dtype=dtype)
        logits.requires_grad_(True)
        targets = torch.randint(0, vocab, (batch, time_steps), device=device)
        segments = random_segments(batch, time_steps, device)
        upstream = torch.randn(batch, device=device)
        for with_entropy in (False, True):
            rows += _segment_case(logits, targets, segments, upstream, with_entropy, repeats)
    return rows


def _hidden_case(hidden, weight, targets, segments, repeats) -> list[Row]:
    batch, time_steps, width = hidden.shape
    dtype = str(hidden.dtype).split(".")[-1]
    case = f"B*T={batch * time_steps} H={width} V={weight.shape[0]} {dtype}"

    def ours():
        result = segment_logprob_from_hidden(
            hidden, weight, targets, segments, 0.5, 0.2, return_entropy=True
        )
        loss = result.logprob.sum() + 0.01 * result.entropy.sum()
        return torch.autograd.grad(loss, hidden)[0]

    def naive():
        logits = hidden @ weight.t()
        logprob, entropy = naive_segment_logprob(logits, targets, segments, 0.5, 0.2, True)
        return torch.autograd.grad(logprob.sum() + 0.01 * entropy.sum(), hidden)[0]

    diff = (ours().float() - naive().float()).abs().max().item()
    rows = []
    for variant, fn in (("ours", ours), ("naive torch", naive)):
        ms, peak = measure(fn, hidden.device, repeats)
        extra = {"max_abs_diff_grad": diff} if variant == "ours" else {}
        rows.append(Row("segment_logprob_from_hidden", case, variant, ms, peak, None, extra))
    return rows


def bench_hidden(sizes, device, dtype, repeats) -> list[Row]:
    rows = []
    batch, time_steps = sizes["segment_bt"]
    width = sizes["hidden_width"]
    for vocab in sizes["vocabs"]:
        hidden = torch.randn(batch, time_steps, width, device=device, dtype=dtype)
        hidden.requires_grad_(True)
        weight = torch.randn(vocab, width, device=device, dtype=dtype) / width**0.5
        targets = torch.randint(0, vocab, (batch, time_steps), device=device)
        segments = random_segments(batch, time_steps, device)
        rows += _hidden_case(hidden, weight, targets, segments, repeats)
    return rows


def bench_gae(sizes, device, repeats) -> list[Row]:
    steps, envs = sizes["gae"]
    rewards = torch.randn(steps, envs, device=device)
    values = torch.randn(steps + 1, envs, device=device)
    dones = torch.rand(steps, envs, device=device) < 0.05
    case = f"T={steps} N={envs}"
    expected, _ = gae_reference(rewards, values, dones, 0.9, 0.95)
    variants = [
        ("ours", lambda: gae(rewards, values, dones, 0.9, 0.95)),
        ("cleanrl loop", lambda: gae_cleanrl_loop(rewards, values, dones, 0.9, 0.95)),
        ("vectorised scan", lambda: gae_vectorised_scan(rewards, values, dones, 0.9, 0.95)),
        ("python loop", lambda: gae_python_loop(rewards, values, dones, 0.9, 0.95)),
    ]
    # Reads rewards, dones (as fp32), values; writes advantages and returns.
    moved = 5 * steps * envs * 4
    rows = []
    for variant, fn in variants:
        advantages = fn()[0]
        diff = (advantages.to(expected.device) - expected).abs().max().item()
        ms, peak = measure(fn, device, 1 if variant == "python loop" else repeats)
        rows.append(Row("gae", case, variant, ms, peak, moved, {"max_abs_diff": diff}))
    return rows


def bench_mof(sizes, device, dtype, repeats) -> list[Row]:
    batch, tokens, width, length = sizes["mof"]
    offset = (length - 2 * tokens) // 2
    clip = torch.randn(batch, tokens, width, device=device, dtype=dtype, requires_grad=True)
    dino = torch.randn(batch, tokens, width, device=device, dtype=dtype, requires_grad=True)
    text = torch.randn(batch, length, width, device=device, dtype=dtype, requires_grad=True)
    adapter_clip = torch.nn.Linear(width, width, device=device, dtype=dtype)
    adapter_dino = torch.nn.Linear(width, width, device=device, dtype=dtype)
    offsets = torch.full((batch,), offset, dtype=torch.int64, device=device)
    upstream = torch.randn(batch, length, width, device=device, dtype=dtype)
    case = f"B={batch} N={tokens} D={width} L={length} {str(dtype).split('.')[-1]}"

    def ours(adapters: bool = False):
        c, d = (adapter_clip(clip), adapter_dino(dino)) if adapters else (clip, dino)
        merged = mof_interleave(c, d, out=text * 1, offsets=offsets)
        return torch.autograd.grad((merged * upstream).sum(), (clip, dino, text))

    def naive(adapters: bool = False):
        c, d = (adapter_clip(clip), adapter_dino(dino)) if adapters else (clip, dino)
        merged = naive_interleave_cat(c, d, text[:, :offset], text[:, offset + 2 * tokens :])
        return torch.autograd.grad((merged * upstream).sum(), (clip, dino, text))

    diff = max((a - b).abs().max().item() for a, b in zip(ours(), naive(), strict=True))
    rows = []
    element = clip.element_size()
    buffer = text.detach().clone()

    def ours_forward():
        with torch.no_grad():
            return mof_interleave(clip, dino, out=buffer, offsets=offsets)

    def naive_forward():
        with torch.no_grad():
            return naive_interleave_cat(
                clip, dino, text[:, :offset], text[:, offset + 2 * tokens :]
            )

    # Forward alone: both token sets read once, written once into the buffer.
    moved = 4 * batch * tokens * width * element
    for variant, fn in (("ours", ours_forward), ("naive torch", naive_forward)):
        ms, peak = measure(fn, device, repeats)
        rows.append(Row("mof_interleave", case + " fwd", variant, ms, peak, moved))
    for variant, fn in (("ours", ours), ("naive torch", naive)):
        ms, peak = measure(fn, device, repeats)
        extra = {"max_abs_diff_grad": diff} if variant == "ours" else {}
        rows.append(Row("mof_interleave", case + " fwd+bwd", variant, ms, peak, None, extra))
    for variant, fn in (("ours", ours), ("naive torch", naive)):
        ms, peak = measure(lambda fn=fn: fn(True), device, repeats)
        rows.append(Row("mof_interleave", case + " +adapters", variant, ms, peak))

    grad_mix = upstream[:, :tokens]

    def additive_ours(backward: bool = True):
        if not backward:
            with torch.no_grad():
                return mof_additive(clip, dino, 0.3)
        return torch.autograd.grad((mof_additive(clip, dino, 0.3) * grad_mix).sum(), (clip, dino))

    def additive_naive(backward: bool = True):
        if not backward:
            with torch.no_grad():
                return 0.3 * clip + (1 - 0.3) * dino
        mixed = 0.3 * clip + (1 - 0.3) * dino
        return torch.autograd.grad((mixed * grad_mix).sum(), (clip, dino))

    # Forward alone reads two tensors and writes one.
    moved = 3 * batch * tokens * width * element
    additive_case = case.replace(f" L={length}", "")
    for variant, fn in (("ours", additive_ours), ("naive torch", additive_naive)):
        ms, peak = measure(lambda fn=fn: fn(False), device, repeats)
        rows.append(Row("mof_additive", additive_case + " fwd", variant, ms, peak, moved))
    for variant, fn in (("ours", additive_ours), ("naive torch", additive_naive)):
        ms, peak = measure(fn, device, repeats)
        rows.append(Row("mof_additive", additive_case + " fwd+bwd", variant, ms, peak))
    return rows


def add_ratios(rows: list[Row], copy_bw: float | None) -> None:
    """Speed-up and memory ratio of each baseline row over its case's 'ours' row."""
    ours = {(r.kernel, r.case): r for r in rows if r.variant == "ours"}
    for row in rows:
        mine = ours[(row.kernel, row.case)]
        row.extra["speedup_of_ours"] = round(row.ms / mine.ms, 3)
        if row.peak_mib and mine.peak_mib:
            row.extra["memory_ratio_of_ours"] = round(row.peak_mib / mine.peak_mib, 3)
        if copy_bw and row.moved_bytes and row.variant == "ours":
            achieved = row.moved_bytes / (row.ms / 1e3)
            row.extra["achieved_gbps"] = round(achieved / 1e9, 1)
            row.extra["copy_gbps"] = round(copy_bw / 1e9, 1)
            row.extra["x_bandwidth_floor"] = round(copy_bw / achieved, 2)


def print_table(rows: list[Row]) -> None:
    header = f"{'kernel':<28} {'case':<44} {'variant':<16} {'ms':>10} {'peak MiB':>9} {'naive/ours':>10} {'mem ratio':>9} {'x floor':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        peak = "n/a" if row.peak_mib is None else f"{row.peak_mib:.0f}"
        ratio = f"{row.extra['speedup_of_ours']:.2f}x"
        mem = row.extra.get("memory_ratio_of_ours")
        floor = row.extra.get("x_bandwidth_floor")
        print(
            f"{row.kernel:<28} {row.case:<44} {row.variant:<16} {row.ms:>10.3f} {peak:>9} "
            f"{ratio:>10} {'' if mem is None else f'{mem:.2f}x':>9} {'' if floor is None else floor:>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (CI)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", default="segment,hidden,gae,mof")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        sizes = {
            "segment_bt": (16, 512),
            "vocabs": (32064, 128256),
            "hidden_width": 4096,
            "gae": (512, 4096),
            "mof": (8, 576, 4096, 2048),
        }
        dtype = torch.bfloat16
        repeats = args.repeats or 10
        if args.quick:
            sizes.update(vocabs=(32064,), segment_bt=(8, 512))
    else:
        sizes = {
            "segment_bt": (4, 64),
            "vocabs": (4099, 32064),
            "hidden_width": 256,
            "gae": (128, 256),
            "mof": (2, 64, 256, 192),
        }
        dtype = torch.float32
        repeats = args.repeats or 5
        if args.quick:
            sizes.update(vocabs=(4099,), gae=(64, 64), mof=(2, 16, 64, 48), segment_bt=(2, 32))
    chosen = set(args.only.split(","))
    torch.manual_seed(0)
    probe = torch.empty(1, device=device)
    rows: list[Row] = []
    if "segment" in chosen:
        rows += bench_segment(sizes, device, dtype, repeats)
    if "hidden" in chosen:
        rows += bench_hidden(sizes, device, dtype, repeats)
    if "gae" in chosen:
        rows += bench_gae(sizes, device, repeats)
    if "mof" in chosen:
        rows += bench_mof(sizes, device, dtype, repeats)
    copy_bw = copy_bandwidth(device)
    add_ratios(rows, copy_bw)
    machine = (
        torch.cuda.get_device_name(device)
        if on_gpu
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    backend = choose_backend(probe)
    print(f"device: {machine}; kernel backend: {backend}; repeats: {repeats}")
    if backend == "reference":
        print("no CUDA: 'ours' is the PyTorch reference path at small sizes (not the GPU targets)")
    elif backend == "interpreter":
        print("TRITON_INTERPRET=1: 'ours' runs in the Triton interpreter (checks, not timings)")
    print_table(rows)
    print(
        json.dumps(
            {
                "bench": "kernels",
                "device": machine,
                "backend": backend,
                "copy_gbps": None if copy_bw is None else round(copy_bw / 1e9, 1),
                "quick": args.quick,
                "rows": [row.as_dict() for row in rows],
            }
        )
    )


if __name__ == "__main__":
    main()
