"""Supervised fine-tuning on expert responses; ``python -m vlrl.sft`` runs it alone.

The loss is the policy's mean token cross-entropy over response tokens (prompt masked);
AdamW with linear warmup and cosine decay; one epoch by default. ``python -m vlrl.sft``
uses the same config system as ``vlrl.train`` (the ``sft`` and ``env`` sections), writes a
checkpoint in the same format (so ``python -m vlrl.train init_from=<run>/checkpoints/
update-000000/policy`` or ``python -m vlrl.evaluate <run>`` can use it) and evaluates the
result.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlrl.config import TrainConfig
from vlrl.ppo import grads_finite


def sft_steps(num_examples: int, batch_size: int, epochs: float, max_steps: int | None) -> int:
    steps = max(1, math.ceil(num_examples * epochs / batch_size))
    return min(steps, max_steps) if max_steps else steps


def run_sft(
    policy, cfg: TrainConfig, console=None, logger=None, seed: int = 0, ctx=None
) -> dict[str, Any]:
    """Train ``policy`` in place on expert data built from ``cfg.env``; returns statistics."""
    from vlrl.sft_data import build_sft_examples

    sft = cfg.sft
    cot = cfg.env.cot if sft.cot is None else sft.cot
    kwargs = dict(cfg.env.kwargs)
    kwargs.setdefault("image_size", int(policy.image_size))
    t0 = time.time()
    examples = build_sft_examples(
        cfg.env.id,
        kwargs,
        sft.num_examples,
        seed=seed + 7919,
        cot=cot,
        suboptimal_share=sft.suboptimal_share,
        action_noise=sft.action_noise,
    )
    data_seconds = time.time() - t0
    steps = sft_steps(len(examples), sft.batch_size, sft.epochs, sft.max_steps)
    params = policy.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=sft.lr, weight_decay=sft.weight_decay)
    warmup = max(1, int(sft.warmup_ratio * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        floor = sft.lr_min / sft.lr if sft.lr > 0 else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    rng = np.random.default_rng(seed)
    order: list[int] = []
    policy.train(True)
    losses: list[float] = []
    tokens = 0
    skipped = 0
    progress, task = console.progress("SFT", steps) if console is not None else (None, None)
    try:
        for step in range(steps):
            if len(order) < sft.batch_size:
                order.extend(rng.permutation(len(examples)).tolist())
            idx, order = order[: sft.batch_size], order[sft.batch_size :]
            batch = [examples[i] for i in idx]
            loss = policy.sft_loss(
                [e.image for e in batch], [e.prompt for e in batch], [e.response for e in batch]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if ctx is not None and ctx.world_size > 1:
                ctx.reduce_grads(params)  # every rank reduces, so a skip is unanimous
            if grads_finite(params):
                if sft.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, sft.max_grad_norm)
                optimizer.step()
            else:
                skipped += 1  # never apply a non-finite step
            scheduler.step()
            losses.append(float(loss.detach()))
            tokens += sum(len(e.prompt) + len(e.response) for e in batch)  # refined below
            if logger is not None and (step % 10 == 0 or step == steps - 1):
                logger.log(
                    step,
                    {"sft/loss": float(loss.detach()), "sft/lr": scheduler.get_last_lr()[0]},
                    phase="sft",
                )
            if progress is not None:
                progress.update(task, advance=1, description=f"loss {np.mean(losses[-20:]):.3f}")
    finally:
        if progress is not None:
            progress.stop()
    # Token count for the compute estimate: tokenizer length of prompt + response.
    sample = examples[: min(64, len(examples))]
    per_char = np.mean(
        [
            (
                len(policy.tokenizer(e.prompt + e.response)["input_ids"])
                / max(1, len(e.prompt) + len(e.response))
            )
            for e in sample
        ]
    )
    tokens = int(tokens * per_char)
    return {
        "steps": steps,
        "skipped_steps": skipped,
        "examples": len(examples),
        "final_loss": float(np.mean(losses[-20:])) if losses else math.nan,
        "tokens": tokens,
        "seconds": time.time() - t0,
        "data_seconds": data_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m vlrl.sft [--config FILE] [key=value ...]``: SFT alone, then evaluation."""
    from vlrl import checkpoint as ckpt
    from vlrl.config import ConfigError, describe, load_config, make_run_name, save_config
    from vlrl.logging_utils import RunLogger
    from vlrl.train import (
        Console,
        _evaluate,
        build_agent,
        default_config_path,
        parse_args,
        seed_everything,
    )

    args, _ = parse_args(argv, "python -m vlrl.sft", "Supervised fine-tuning on expert data.")
    try:
        cfg = load_config(args.config if args.config else default_config_path(), args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.help_config:
        print(describe(cfg))
        return 0
    if cfg.exp_name == "ppo":
        cfg.exp_name = "sft"
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    run_dir = Path(cfg.out_dir) / make_run_name(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    console = Console(cfg.progress)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard)
    started = time.time()
    agent = build_agent(cfg)
    stats = run_sft(agent.policy, cfg, console=console, logger=logger, seed=cfg.seed)
    ckpt.save_checkpoint(
        run_dir / "checkpoints", 0, agent.save, {"progress": {"update": 0, "sft": stats}}
    )
    result = _evaluate(agent, cfg)
    logger.log(stats["steps"], {f"eval/{k}": v for k, v in result.items()}, phase="sft_end")
    logger.close()
    summary = {
        "sft_success": result["success"],
        "seconds": time.time() - started,
        "seed": cfg.seed,
        "sft": stats,
        "eval": result,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(
        f"SFT: {stats['steps']} steps, loss {stats['final_loss']:.3f}; success {result['success']:.3f} ± {result['success_stderr']:.3f}"
    )
    console.print(f"outputs: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
