"""Evaluating a study's checkpoints: every checkpoint of every arm on every variant, with
the same paired episodes (episode e of each evaluation starts from ``evaluation.seed + e``).

Each result is one JSON file (``evals/<arm>/seed-<s>/step-<k>.json``), written once, so a
rerun evaluates only what is missing. Sampling is seeded before each variant from the
evaluation seed, so a result depends only on the policy and the variant. The base (every
arm's checkpoint 0) is evaluated once per seed and per evaluation setting (CoT or not,
temperature, answer length) and shared by the arms with that setting.

With the spec's ``evaluation.emt``, each file also holds the checkpoint's EMT accuracy on
the held-out images (key ``emt``, with the settings it was measured with). A stored file
without it, or with other settings, gets it measured and added (the env results are kept,
not measured again); so EMT can be added to a study that has already run.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from vlrl.config import TrainConfig
from vlrl.reporting import write_json
from vlrl.studies.emt_task import emt_accuracy, emt_settings
from vlrl.studies.spec import EmtEvaluation
from vlrl.training.checkpoint import seed_everything
from vlrl.training.episodes import eval_temperature
from vlrl.training.evaluation import evaluate_agent
from vlrl.training.run_log import training_flops
from vlrl.training.vlm_agent import build_agent


def eval_signature(cfg: TrainConfig) -> str:
    """What, beside the policy, decides an evaluation's outcome: arms that share it share
    the base's evaluation."""
    key = {
        "cot": cfg.env.cot,
        "legal_only": cfg.env.legal_only,
        "temperature": eval_temperature(cfg),
        "top_p": cfg.ppo.top_p,
        "max_new_tokens": cfg.ppo.max_new_tokens,
        "episodes": cfg.eval.episodes,
        "eval_seed": cfg.eval.seed,
        "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def load_agent(cfg: TrainConfig, policy_dir: Path) -> Any:
    """The saved policy's agent, in eval mode, on ``cfg.threads`` threads."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    agent = build_agent(cfg, policy_path=str(policy_dir))
    agent.train(False)
    return agent


def evaluate_policy(
    cfg: TrainConfig, policy_dir: Path, variants: dict[str, dict], agent: Any = None
) -> dict[str, dict[str, float]]:
    """Metrics of the saved policy (or of ``agent``, already loaded from it) on each
    variant (``cfg.eval`` episodes, paired)."""
    if agent is None:
        agent = load_agent(cfg, policy_dir)
    out = {}
    for name, kwargs in variants.items():
        seed_everything(cfg.eval.seed)
        out[name] = evaluate_agent(
            agent,
            cfg.env.id,
            agent.env_kwargs(kwargs),
            cfg.eval.episodes,
            cfg.eval.seed,
            cfg.eval.num_envs,
            eval_temperature(cfg),
        )
    return out


def flops_of(kind: str, n_params: int, d_init: float, point: Any | None) -> float:
    """Training FLOPs of a checkpoint (SPEC section 2): X_SFT = 6N(D_init + D_SFT),
    X_RL = 6N(D_init + D_RL) + 2N D_buffer (an RL arm's warm-start SFT tokens count in its
    D_init); the base is 6N D_init."""
    if point is None:
        return training_flops(n_params, d_init)["flops_sft"]
    if kind == "sft":
        return training_flops(n_params, d_init, d_sft=point.d_sft)["flops_sft"]
    return training_flops(n_params, d_init + point.d_sft, d_rl=point.d_rl, d_buffer=point.d_buffer)[
        "flops_rl"
    ]


def _emt_settings(emt: EmtEvaluation) -> dict[str, Any]:
    return emt_settings(emt.dataset, emt.examples, emt.batch_size, emt.max_new_tokens)


def cached_evaluation(
    path: Path,
    cfg: TrainConfig,
    policy_dir: Path,
    variants: dict[str, dict],
    record: dict[str, Any],
    emt: EmtEvaluation | None = None,
) -> dict[str, Any]:
    """The evaluation stored at ``path``, or a new one (written atomically); with ``emt``,
    one whose EMT result is missing or was measured otherwise gets it (re)measured."""
    payload = json.loads(path.read_text()) if path.is_file() else None
    stale_emt = emt is not None and (
        payload is None or (payload.get("emt") or {}).get("settings") != _emt_settings(emt)
    )
    if payload is not None and not stale_emt:
        return payload
    agent = load_agent(cfg, policy_dir)
    if payload is None:
        t0 = time.time()
        results = evaluate_policy(cfg, policy_dir, variants, agent)
        payload = {**record, "variants": results, "seconds": time.time() - t0}
    if emt is not None:
        payload["emt"] = emt_accuracy(
            agent.policy, emt.dataset, emt.examples, emt.batch_size, emt.max_new_tokens
        )
    write_json(path, payload)
    return payload
