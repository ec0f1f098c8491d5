"""The study's base policy: the configured model, optionally after a foundation stage.

The dissertation post-trains a pretrained 11B model that already reads rules from its
prompt. A random-weight tiny VLM does not, so a tiny study first trains a foundation:
SFT on a *mixture* of variants (e.g. NumberLine up to 5 and up to 9, CoT and not), short
enough that the model is competent but imperfect on each. Every arm then starts from this
one saved policy (``base/policy``), and its training FLOPs start at 6 N D_init with D_init
the foundation's tokens.

The foundation is one short loop here rather than ``run_sft`` because run_sft builds its
data from one env variant (``cfg.env.kwargs``); the loop is the same recipe (AdamW, linear
warm-up then cosine, gradient clipping, non-finite steps skipped, tokens counted as run_sft
counts them). It is not resumable: a study killed during it builds it again.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlrl.config import TrainConfig
from vlrl.reporting import write_json
from vlrl.studies.emt_task import emt_examples, emt_split
from vlrl.studies.spec import Foundation
from vlrl.training.checkpoint import seed_everything
from vlrl.training.expert_data import SFTExample, build_sft_examples
from vlrl.training.optim import make_scheduler
from vlrl.training.ppo import grads_finite
from vlrl.training.vlm_agent import build_agent

BASE_INFO = "base.json"


def model_params(policy: Any) -> int:
    """N of the FLOPs estimate: the policy's parameters without the value head (the
    head is PPO's critic, not the model; a tiny model's head is as large as the model)."""
    total = sum(p.numel() for p in policy.parameters())
    head = getattr(policy, "value_head", None)
    if head is not None:
        total -= sum(p.numel() for p in head.parameters())
    return int(total)


def tokens_per_char(policy: Any, examples: list[SFTExample], sample: int = 64) -> float:
    """Tokenizer tokens per character of prompt + response, over a sample of examples (the
    ratio run_sft uses to turn its character count into tokens)."""
    texts = [e.prompt + e.response for e in examples[:sample]]
    ratios = [len(policy.tokenizer(t)["input_ids"]) / max(1, len(t)) for t in texts]
    return float(np.mean(ratios)) if ratios else 1.0


def foundation_examples(
    cfg: TrainConfig, foundation: Foundation, image_size: int, seed: int
) -> list[SFTExample]:
    """The mixture's expert examples, each variant's share by weight, shuffled. An EMT
    component's examples come from its dataset's training part only (never the held-out
    images the study evaluates on), at the model's image size."""
    total = foundation.examples or foundation.steps * foundation.batch_size
    weights = np.array([c.weight for c in foundation.mixture], dtype=np.float64)
    counts = np.floor(total * weights / weights.sum()).astype(int)
    counts[0] += total - counts.sum()
    examples: list[SFTExample] = []
    for i, (component, count) in enumerate(zip(foundation.mixture, counts, strict=True)):
        if count < 1:
            continue
        if component.emt is not None:
            train = emt_split(component.emt, image_size).train
            examples += emt_examples(train, int(count), seed=seed + 7919 + 100_003 * i)
            continue
        kwargs = {**cfg.env.kwargs, **component.kwargs}
        kwargs.setdefault("image_size", image_size)
        examples += build_sft_examples(
            cfg.env.id,
            kwargs,
            int(count),
            seed=seed + 7919 + 100_003 * i,
            cot=cfg.env.cot if component.cot is None else component.cot,
            action_noise=(
                cfg.sft.action_noise if component.action_noise is None else component.action_noise
            ),
        )
    order = np.random.default_rng(seed).permutation(len(examples))
    return [examples[i] for i in order]


def train_foundation(
    policy: Any, examples: list[SFTExample], foundation: Foundation, log: Any = None
) -> dict[str, float]:
    """SFT of ``policy`` in place on ``examples``; returns steps, loss, tokens, seconds."""
    params = policy.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=foundation.lr)
    warmup = max(1, int(foundation.warmup_ratio * foundation.steps))
    scheduler = make_scheduler(
        optimizer, foundation.steps, foundation.lr, foundation.lr_min, "cosine", warmup
    )
    policy.train(True)
    t0 = time.time()
    chars, losses, skipped, cursor = 0, [], 0, 0
    for step in range(foundation.steps):
        batch = []
        while len(batch) < foundation.batch_size:
            batch.append(examples[cursor % len(examples)])
            cursor += 1
        loss = policy.sft_loss(
            [e.image for e in batch], [e.prompt for e in batch], [e.response for e in batch]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grads_finite(params):
            if foundation.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, foundation.max_grad_norm)
            optimizer.step()
        else:
            skipped += 1
        scheduler.step()
        losses.append(float(loss.detach()))
        chars += sum(len(e.prompt) + len(e.response) for e in batch)
        if log is not None and (step % 50 == 0 or step == foundation.steps - 1):
            log(f"foundation step {step + 1}/{foundation.steps}: loss {np.mean(losses[-20:]):.3f}")
    policy.train(False)
    return {
        "steps": foundation.steps,
        "skipped_steps": skipped,
        "final_loss": float(np.mean(losses[-20:])),
        "tokens": int(chars * tokens_per_char(policy, examples)),
        "seconds": time.time() - t0,
    }


def build_base(
    cfg: TrainConfig, foundation: Foundation | None, folder: Path, log: Any = None
) -> dict[str, Any]:
    """Make ``folder/policy`` (the model of ``cfg``, after the foundation when there is
    one) and ``folder/base.json`` (N, D_init, the foundation's statistics). Written into a
    temporary folder and renamed, so a folder with ``base.json`` is whole."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    agent = build_agent(cfg)
    stats: dict[str, Any] = {"steps": 0, "tokens": 0, "seconds": 0.0}
    if foundation is not None:
        t0 = time.time()
        examples = foundation_examples(cfg, foundation, int(agent.policy.image_size), cfg.seed)
        data_seconds = time.time() - t0
        stats = train_foundation(agent.policy, examples, foundation, log)
        stats["data_seconds"] = data_seconds
        stats["examples"] = len(examples)
    tmp = folder.with_name(f".tmp-{folder.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    agent.save(tmp / "policy")
    info = {
        "model": cfg.model.name,
        "seed": cfg.seed,
        "n_params": model_params(agent.policy),
        "n_params_with_value_head": int(agent.n_params),
        "d_init": int(stats["tokens"]),
        "foundation": stats,
    }
    write_json(tmp / BASE_INFO, info)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return info
