"""``python -m vlrl.train``: SFT warm start, then PPO (Algorithm 1), with evaluation and logs.

With no arguments it runs the CPU preset ``configs/numberline_tiny_cpu.yaml``: the tiny
VLM on NumberLine, a short SFT warm start, PPO, and prints the success rate of the SFT
start and of the final policy. Outputs go to ``runs/<run name>/``:

    config.yaml          the resolved config (loadable with --config)
    metrics.jsonl        one JSON object per update / evaluation
    tensorboard/         the same scalars for TensorBoard (charts/*, losses/*, eval/*)
    learning_curve.png   success (smoothed, with binomial error bars) and loss terms
    summary.json         sft_success, final_success, seconds, seed, ... (see _summary)
    checkpoints/         atomic checkpoints; --resume continues from the newest

Usage::

    python -m vlrl.train                                  # the CPU demo
    python -m vlrl.train seed=2 out_dir=/tmp/runs
    python -m vlrl.train --config configs/points24_llava_next.yaml model.name=/models/llava
    python -m vlrl.train --resume runs/NumberLine-v0__ppo__1__1764000000
    python -m vlrl.train --help-config                    # every key, default and meaning
"""

from __future__ import annotations

import os

# Several processes share few cores here: OpenMP threads that spin while waiting for work
# make every torch op many times slower under contention. Passive waiting costs nothing
# on an idle machine. It must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlrl import checkpoint as ckpt
from vlrl.buffer import RolloutBuffer
from vlrl.config import (
    ConfigError,
    TrainConfig,
    describe,
    load_config,
    make_run_name,
    save_config,
)
from vlrl.distributed import DistContext, setup
from vlrl.evaluate import (
    episode_success,
    eval_temperature,
    evaluate_agent,
    make_env,
    training_flops,
)
from vlrl.logging_utils import RunLogger, plot_learning_curve, read_jsonl
from vlrl.ppo import LossCoefficients, ScoreOutput, ppo_update

# The no-argument run: the YAML preset configs/numberline_tiny_cpu.yaml holds the same
# values with the reasons for each departure from the GPU presets.
CPU_DEFAULT_PRESET = "numberline_tiny_cpu.yaml"


def default_config_path() -> Path | None:
    """The CPU preset shipped in the repository (None when running from a bare wheel)."""
    here = Path(__file__).resolve().parent
    for root in (here.parent / "configs", here / "configs"):
        if (root / CPU_DEFAULT_PRESET).is_file():
            return root / CPU_DEFAULT_PRESET
    return None


# --------------------------------------------------------------------------- agents


@dataclass
class ActOutput:
    """One batched decision for a list of envs."""

    actions: list  # int indices, or raw texts for text-action envs
    payloads: list
    logprob: torch.Tensor
    values: torch.Tensor
    fallbacks: list[bool]
    texts: list[str] = field(default_factory=list)
    generated_tokens: int = 0
    seconds_generate: float = 0.0
    seconds_recompute: float = 0.0


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (SeedSequence mixes them well)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0] >> 1
    )


class VLMAgent:
    """The VLM policy as a PPO agent: prompt h(o), generate, f, λ-weighted log-prob."""

    def __init__(self, policy, cfg: TrainConfig, ref_policy=None):
        self.policy = policy
        self.cfg = cfg
        self.ref_policy = ref_policy
        self.rng = np.random.default_rng(cfg.seed)
        self.sample_seed: int | None = None
        # DeepSpeed / FSDP: the accelerate-prepared ScoreModule (its forward is score)
        self.score_module = None

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.policy.parameters())

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.policy.trainable_parameters()

    def value_parameters(self) -> list[torch.nn.Parameter]:
        head = getattr(self.policy, "value_head", None)
        return [p for p in head.parameters() if p.requires_grad] if head is not None else []

    def env_kwargs(self, kwargs: dict) -> dict:
        """Env arguments with the image size the vision tower expects, unless given."""
        out = dict(kwargs)
        out.setdefault("image_size", int(self.policy.image_size))
        return out

    def train(self, mode: bool = True) -> None:
        self.policy.train(mode)

    def _prompts(self, envs: Sequence[Any]) -> list[str]:
        return [env.unwrapped.prompt(cot=self.cfg.env.cot) for env in envs]

    @staticmethod
    def _images(observations: Sequence[Any]) -> list:
        return [obs["image"] if isinstance(obs, dict) else None for obs in observations]

    def act(
        self, envs, observations, temperature: float | None = None, need_logprob: bool = True
    ) -> ActOutput:
        from vlrl.envs import parse_action

        ppo_cfg = self.cfg.ppo
        temperature = ppo_cfg.temperature if temperature is None else temperature
        images = self._images(observations)
        prompts = self._prompts(envs)
        keys = [getattr(env.unwrapped, "answer_key", "action") for env in envs]
        started = time.perf_counter()
        seed = None
        if self.sample_seed is not None:
            seed = self.sample_seed
            self.sample_seed += 1
        gen = self.policy.generate(
            images,
            prompts,
            temperature=temperature,
            top_p=ppo_cfg.top_p,
            max_new_tokens=ppo_cfg.max_new_tokens,
            answer_key=keys,
            lam=ppo_cfg.thought_lambda,
            seed=seed,
        )
        seconds_generate = time.perf_counter() - started
        actions, fallbacks = [], []
        for env, text in zip(envs, gen.texts, strict=True):
            if getattr(env.unwrapped, "takes_text_action", False):
                actions.append(text)
                fallbacks.append(False)  # the env reports its own fallback in info
            else:
                index, used_fallback = parse_action(
                    env, text, legal_only=self.cfg.env.legal_only, rng=self.rng
                )
                actions.append(int(index))
                fallbacks.append(bool(used_fallback))
        payloads = [
            (img, p, o, s)
            for img, p, o, s in zip(
                images, gen.prompt_ids, gen.output_ids, gen.segment_ids, strict=True
            )
        ]
        logprob = gen.logprob.detach().float().cpu()
        values = (
            gen.values.detach().float().cpu() if gen.values is not None else torch.zeros(len(envs))
        )
        seconds_recompute = 0.0
        if need_logprob and ppo_cfg.recompute_old_logprob:
            started = time.perf_counter()
            with torch.no_grad():
                lp, vals = [], []
                k = ppo_cfg.forward_batch
                for i in range(0, len(payloads), k):
                    out = self.score(payloads[i : i + k], with_ref=False)
                    lp.append(out.logprob.detach().float().cpu())
                    vals.append(out.values.detach().float().cpu())
                logprob, values = torch.cat(lp), torch.cat(vals)
            seconds_recompute = time.perf_counter() - started
        return ActOutput(
            actions,
            payloads,
            logprob,
            values,
            fallbacks,
            list(gen.texts),
            gen.num_generated_tokens,
            seconds_generate,
            seconds_recompute,
        )

    def score(self, payloads: list, with_ref: bool = True) -> ScoreOutput:
        images, prompt_ids, output_ids, segment_ids = (list(x) for x in zip(*payloads, strict=True))
        kwargs = {"lam": self.cfg.ppo.thought_lambda, "temperature": self.cfg.ppo.temperature}
        scorer = self.score_module if self.score_module is not None else self.policy.score
        out = scorer(images, prompt_ids, output_ids, segment_ids, **kwargs)
        ref = None
        if with_ref and self.ref_policy is not None and self.cfg.ppo.kl_coef > 0:
            with torch.no_grad():
                ref = self.ref_policy.score(
                    images, prompt_ids, output_ids, segment_ids, **kwargs
                ).logprob
        values = out.values if out.values is not None else torch.zeros_like(out.logprob)
        return ScoreOutput(out.logprob.float(), values.float(), out.entropy.float(), ref)

    def values(self, envs, observations) -> torch.Tensor:
        with torch.no_grad():
            return self.policy.values(self._images(observations), self._prompts(envs)).float().cpu()

    def token_count(self, payload) -> int:
        return int(payload[1].numel() + payload[2].numel())

    def save(self, path: Path) -> None:
        self.policy.save(path)


class ScoreModule(torch.nn.Module):
    """Wraps a policy so that ``forward`` is ``policy.score``: engines that hook forward
    (DDP, FSDP, DeepSpeed) then see every scoring pass."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(
        self, images, prompt_ids, output_ids, segment_ids, *, lam: float, temperature: float
    ):
        return self.policy.score(
            images, prompt_ids, output_ids, segment_ids, lam=lam, temperature=temperature
        )


def _lora_settings(cfg: TrainConfig):
    if not cfg.model.lora:
        return None
    from vlrl.models import LoraSettings

    return LoraSettings(
        r=cfg.model.lora_r, alpha=cfg.model.lora_alpha, dropout=cfg.model.lora_dropout
    )


def build_agent(
    cfg: TrainConfig, policy_path: str | None = None, device: str | torch.device = "cpu"
):
    """The agent of ``cfg.model.name`` ('cnn': the CNN+RL baseline), optionally restored from
    ``policy_path`` (a folder written by ``save``)."""
    if cfg.model.name == "cnn":
        from vlrl.cnn_baseline import CNNAgent

        return CNNAgent.load(policy_path, cfg) if policy_path else CNNAgent(cfg)
    from vlrl.models import load_policy

    source = policy_path or cfg.init_from or cfg.model.name
    if policy_path or cfg.init_from:
        policy = load_policy(str(source), device=str(device), seed=cfg.seed)
    else:
        policy = load_policy(
            source,
            lora=_lora_settings(cfg),
            dtype=cfg.model.dtype,
            value_head=True,
            mof=cfg.model.mof,
            mof_dino=cfg.model.mof_dino,
            attn=cfg.model.attn,
            device=str(device),
            seed=cfg.seed,
        )
    return VLMAgent(policy, cfg)


def resolve_checkpoint(path: Path) -> tuple[Path | None, str]:
    """(run folder or None, policy folder) for a run folder, a checkpoint or a policy folder."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        latest = ckpt.latest_checkpoint(path / "checkpoints")
        if latest is None:
            raise FileNotFoundError(f"{path} has no complete checkpoint")
        return path, str(latest / ckpt.POLICY_DIR)
    if (path / ckpt.STATE_FILE).is_file():
        return path.parent.parent, str(path / ckpt.POLICY_DIR)
    return None, str(path)


# --------------------------------------------------------------------------- rollouts


class EpisodeTracker:
    """Running returns per env; finished episodes' return, success, length."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=int)
        self.finished: list[tuple[float, bool, int]] = []

    def step(self, i: int, reward: float, done: bool, info: dict) -> None:
        self.returns[i] += reward
        self.lengths[i] += 1
        if done:
            self.finished.append(
                (
                    float(self.returns[i]),
                    episode_success(info, self.returns[i]),
                    int(self.lengths[i]),
                )
            )
            self.returns[i] = 0.0
            self.lengths[i] = 0

    def means(self) -> dict[str, float]:
        """Mean return, success and length of the finished episodes (NaN when none)."""
        names = ("episode_return", "episode_success", "episode_length")
        columns = list(zip(*self.finished, strict=True)) or [(), (), ()]
        return {
            name: float(np.mean(column)) if column else math.nan
            for name, column in zip(names, columns, strict=True)
        }


@dataclass
class RolloutStats:
    seconds_generate: float = 0.0
    seconds_env: float = 0.0
    seconds_recompute: float = 0.0
    generated_tokens: int = 0
    fallbacks: int = 0
    steps: int = 0
    tokens: int = 0


def collect_rollout(
    agent, envs, observations, buffer: RolloutBuffer, tracker: EpisodeTracker, temperature: float
) -> RolloutStats:
    """Fill ``buffer`` with num_steps steps of every env (Algorithm 1, lines 8-20)."""
    stats = RolloutStats()
    for _t in range(buffer.num_steps):
        act = agent.act(envs, observations, temperature=temperature)
        stats.seconds_generate += act.seconds_generate
        stats.seconds_recompute += act.seconds_recompute
        stats.generated_tokens += act.generated_tokens
        started = time.perf_counter()
        rewards = np.zeros(len(envs), dtype=np.float32)
        dones = np.zeros(len(envs), dtype=np.float32)
        for i, env in enumerate(envs):
            obs, reward, terminated, truncated, info = env.step(act.actions[i])
            done = bool(terminated or truncated)
            rewards[i] = float(reward)
            dones[i] = float(done)
            stats.fallbacks += int(act.fallbacks[i] or bool(info.get("used_fallback", False)))
            tracker.step(i, float(reward), done, info)
            if done:
                obs, _ = env.reset()
            observations[i] = obs
        stats.seconds_env += time.perf_counter() - started
        stats.steps += len(envs)
        stats.tokens += sum(agent.token_count(p) for p in act.payloads)
        buffer.add(act.payloads, act.logprob, act.values, rewards, dones)
    buffer.set_bootstrap(agent.values(envs, observations))
    return stats


@dataclass
class Iteration:
    """One PPO iteration's rollout statistics, storage and update statistics."""

    rollout: RolloutStats
    tracker: EpisodeTracker
    buffer: RolloutBuffer
    stats: dict[str, float]
    seconds_update: float


def ppo_iteration(
    agent,
    envs,
    cfg: TrainConfig,
    update: int,
    rank_seed: int,
    params,
    optimizer,
    coef: LossCoefficients,
    reduce_grads=None,
    engine: dict | None = None,
    rank_mean=None,
) -> Iteration:
    """Algorithm 1, one k: reset the envs, collect B transitions, GAE, PPO epochs.

    Everything random derives from (rank seed, update index), so a resumed run repeats
    exactly what the uninterrupted one would have done.
    """
    ppo_cfg = cfg.ppo
    num_envs = len(envs)
    num_steps = max(1, math.ceil(ppo_cfg.buffer_size / num_envs))
    seed_everything(derive_seed(rank_seed, update, 1))
    agent.rng = np.random.default_rng(derive_seed(rank_seed, update, 2))
    agent.sample_seed = derive_seed(rank_seed, update, 3)
    observations = [
        env.reset(seed=derive_seed(rank_seed, update, 4, i))[0] for i, env in enumerate(envs)
    ]
    tracker = EpisodeTracker(num_envs)
    buffer = RolloutBuffer(num_steps, num_envs)
    agent.train(False)
    roll = collect_rollout(agent, envs, observations, buffer, tracker, ppo_cfg.temperature)
    batch = buffer.to_batch(ppo_cfg.gamma, ppo_cfg.gae_lambda)
    agent.train(True)
    started = time.time()
    stats = ppo_update(
        batch,
        agent.score,
        params,
        optimizer,
        coef=coef,
        update_epochs=ppo_cfg.update_epochs,
        minibatch_size=ppo_cfg.minibatch_size,
        forward_batch=ppo_cfg.forward_batch,
        max_grad_norm=ppo_cfg.max_grad_norm,
        generator=torch.Generator().manual_seed(derive_seed(rank_seed, update, 5)),
        norm_adv=ppo_cfg.norm_adv,
        target_kl=ppo_cfg.target_kl,
        reduce_grads=reduce_grads,
        rank_mean=rank_mean,
        **(engine or {}),
    )
    return Iteration(roll, tracker, buffer, stats, time.time() - started)


# --------------------------------------------------------------------------- schedules


def cosine_factor(update: int, total: int, lr: float, lr_min: float) -> float:
    """lr multiplier at ``update`` of a cosine from lr to lr_min over ``total`` updates."""
    if lr <= 0:
        return 0.0
    progress = min(max(update / max(total, 1), 0.0), 1.0)
    return (lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * progress))) / lr


def make_optimizer(
    params,
    lr: float,
    eps: float,
    weight_decay: float,
    value_params=None,
    vf_lr: float | None = None,
) -> torch.optim.Optimizer:
    """Adam (eps 1e-7, no weight decay by default, as the reference runs); the value head
    gets its own learning rate ``vf_lr`` when given (the schedule scales both alike)."""
    if vf_lr is None or not value_params:
        return torch.optim.Adam(params, lr=lr, eps=eps, weight_decay=weight_decay)
    value_ids = {id(p) for p in value_params}
    groups = [
        {"params": [p for p in params if id(p) not in value_ids]},
        {"params": [p for p in params if id(p) in value_ids], "lr": vf_lr},
    ]
    return torch.optim.Adam(groups, lr=lr, eps=eps, weight_decay=weight_decay)


def make_scheduler(optimizer, total: int, lr: float, lr_min: float, kind: str):
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _u: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda u: cosine_factor(u, total, lr, lr_min)
    )


def param_digest(params) -> dict[str, Any]:
    """sha256 and sum of the trainable parameters (ranks compare these)."""
    import hashlib

    digest = hashlib.sha256()
    total = 0.0
    for p in params:
        data = p.detach().float().cpu().contiguous()
        digest.update(data.numpy().tobytes())
        total += float(data.double().sum())
    return {"sha": digest.hexdigest(), "sum": total}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- the run


class Console:
    """rich console on the main rank, silent elsewhere."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._console = None
        if enabled:
            from rich.console import Console as RichConsole

            self._console = RichConsole()

    def print(self, *args, **kwargs) -> None:
        if self._console is not None:
            self._console.print(*args, **kwargs)

    @property
    def rich(self):
        return self._console

    def progress(self, label: str, total: int, completed: int = 0):
        """A started rich progress bar and its task id, or (None, None) when silent."""
        if self._console is None:
            return None, None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self._console,
        )
        bar.start()
        return bar, bar.add_task("", total=total, completed=completed)


def _evaluate(agent, cfg: TrainConfig, kwargs: dict | None = None) -> dict[str, float]:
    agent.train(False)
    env_kwargs = agent.env_kwargs(cfg.env.kwargs if kwargs is None else kwargs)
    return evaluate_agent(
        agent,
        cfg.env.id,
        env_kwargs,
        cfg.eval.episodes,
        cfg.eval.seed,
        cfg.eval.num_envs,
        eval_temperature(cfg),
    )


def run(cfg: TrainConfig, resume: Path | None = None) -> dict[str, Any]:
    """The whole job: (resume or) SFT warm start, PPO updates, evaluations, summary."""
    started = time.time()
    ctx: DistContext = setup(
        cfg.device, cfg.distributed.timeout_s, cfg.distributed.cpu, cfg.distributed.mixed_precision
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    console = Console(cfg.progress and ctx.is_main)
    if resume is not None:
        run_dir = Path(resume)
    else:
        run_dir = Path(cfg.out_dir) / make_run_name(cfg)
        if ctx.world_size > 1:
            # every rank must agree on the folder: rank 0's name wins
            import torch.distributed as dist

            names = [str(run_dir)]
            dist.broadcast_object_list(names, src=0)
            run_dir = Path(names[0])
    checkpoints = run_dir / "checkpoints"
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard, enabled=ctx.is_main)
    seed_everything(ctx.rank_seed(cfg.seed))

    state: dict[str, Any] = {
        "update": 0,
        "env_steps": 0,
        "sft_seconds": 0.0,
        "ppo_seconds": 0.0,
        "tokens_rl": 0,
        "tokens_buffer": 0,
        "tokens_sft": 0,
        "elapsed": 0.0,
    }
    latest = ckpt.latest_checkpoint(checkpoints) if resume is not None else None
    if resume is not None and latest is None:
        raise FileNotFoundError(f"--resume {resume}: no complete checkpoint under {checkpoints}")
    if latest is not None:
        agent = build_agent(cfg, policy_path=str(latest / ckpt.POLICY_DIR), device=ctx.device)
        saved = ckpt.load_state(latest)
        state.update(saved["progress"])
        console.print(f"[bold]resumed[/bold] {latest} (update {state['update']})")
    else:
        agent = build_agent(cfg, device=ctx.device)
        saved = None
    # seconds spent by earlier processes of this run (resume); this one's are added
    elapsed_before = float(state["elapsed"])
    console.print(
        f"run [bold]{run_dir}[/bold]  env {cfg.env.id}  model {cfg.model.name}  params {agent.n_params:,}"
    )

    # ---------------------------------------------------------------- SFT warm start
    if saved is None:
        if cfg.sft.enabled and cfg.model.name != "cnn" and cfg.init_from is None:
            from vlrl.sft import run_sft

            t0 = time.time()
            sft_stats = run_sft(
                agent.policy,
                cfg,
                console=console,
                logger=logger,
                seed=ctx.rank_seed(cfg.seed),
                ctx=ctx,
            )
            state["sft_seconds"] = time.time() - t0
            state["tokens_sft"] = sft_stats["tokens"]
            state["sft_loss"] = sft_stats["final_loss"]
        t0 = time.time()
        start_eval = _evaluate(agent, cfg)
        start_eval = ctx.mean(start_eval)
        state["sft_eval"] = start_eval
        state["sft_eval_seconds"] = time.time() - t0
        logger.log(
            0, {f"eval/{k}": v for k, v in start_eval.items()}, env_steps=0, phase="sft_start"
        )
        console.print(
            f"SFT start: success {start_eval['success']:.3f} ± {start_eval['success_stderr']:.3f} "
            f"(return {start_eval['return']:.2f}, per-step acc {start_eval['per_step_accuracy']:.3f}, "
            f"fallback {start_eval['fallback_rate']:.3f}; {cfg.eval.episodes} episodes, {state['sft_eval_seconds']:.0f} s)"
        )
        if cfg.ppo.kl_coef > 0 and ctx.is_main and isinstance(agent, VLMAgent):
            agent.save(run_dir / "initial_policy")
        ctx.barrier()

    if cfg.ppo.kl_coef > 0 and isinstance(agent, VLMAgent):
        from vlrl.models import load_policy

        ref = load_policy(str(run_dir / "initial_policy"), device=str(ctx.device), seed=cfg.seed)
        for p in ref.parameters():
            p.requires_grad_(False)
        ref.eval()
        agent.ref_policy = ref

    # ---------------------------------------------------------------- PPO
    ppo_cfg = cfg.ppo
    params = agent.parameters()
    initial_digest = param_digest(params)
    optimizer = make_optimizer(
        params,
        ppo_cfg.lr,
        ppo_cfg.adam_eps,
        ppo_cfg.weight_decay,
        agent.value_parameters(),
        ppo_cfg.vf_lr,
    )
    scheduler = make_scheduler(
        optimizer, ppo_cfg.num_updates, ppo_cfg.lr, ppo_cfg.lr_min, ppo_cfg.lr_schedule
    )
    if saved is not None and "optimizer" in saved:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    engine = None
    if ctx.sharded and isinstance(agent, VLMAgent):
        # DeepSpeed ZeRO / FSDP own gradient reduction and sharding: score through a
        # prepared module whose forward is policy.score, backward and clipping through the
        # accelerator. (Coded to accelerate's API; not yet run on GPUs.)
        accelerator = ctx.accelerator
        score_module, optimizer = accelerator.prepare(ScoreModule(agent.policy), optimizer)
        agent.score_module = score_module
        engine = {
            "backward": accelerator.backward,
            "clip_grad": accelerator.clip_grad_norm_,
            "no_sync": lambda: accelerator.no_sync(score_module),
        }
    num_envs = cfg.env.num_envs
    envs = [make_env(cfg.env.id, agent.env_kwargs(cfg.env.kwargs)) for _ in range(num_envs)]
    coef = LossCoefficients(
        ppo_cfg.clip_coef, ppo_cfg.vf_clip_coef, ppo_cfg.vf_coef, ppo_cfg.ent_coef, ppo_cfg.kl_coef
    )

    def save(update: int) -> None:
        if not ctx.is_main:
            return
        ckpt.save_checkpoint(
            checkpoints,
            update,
            agent.save,
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "progress": dict(state),
            },
            keep=cfg.keep_checkpoints,
        )

    def evaluate_and_log(prefix: str, phase: str, kwargs: dict | None = None) -> dict:
        result = ctx.mean(_evaluate(agent, cfg, kwargs))
        logger.log(
            state["update"],
            {f"{prefix}/{k}": v for k, v in result.items()},
            env_steps=state["env_steps"],
            phase=phase,
        )
        return result

    if saved is None:
        state["elapsed"] = elapsed_before + (time.time() - started)
        save(0)
    progress, task = console.progress("PPO", ppo_cfg.num_updates, completed=state["update"])
    updates_this_process = 0
    try:
        while state["update"] < ppo_cfg.num_updates:
            update = state["update"]
            t_update = time.time()
            it = ppo_iteration(
                agent,
                envs,
                cfg,
                update,
                ctx.rank_seed(cfg.seed),
                params,
                optimizer,
                coef,
                reduce_grads=(lambda: ctx.reduce_grads(params)) if ctx.world_size > 1 else None,
                engine=engine,
                rank_mean=(lambda v: ctx.mean({"kl": v})["kl"]) if ctx.world_size > 1 else None,
            )
            roll, tracker, buffer, train_stats = it.rollout, it.tracker, it.buffer, it.stats
            seconds_update = it.seconds_update
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            state["update"] = update + 1
            state["env_steps"] += roll.steps * ctx.world_size
            state["tokens_buffer"] += roll.tokens * ctx.world_size
            state["tokens_rl"] += roll.tokens * ppo_cfg.update_epochs * ctx.world_size
            episode_stats = {
                **{f"charts/{k}": v for k, v in tracker.means().items()},
                "charts/episodes": float(len(tracker.finished)),
                "charts/fallback_rate": roll.fallbacks / max(roll.steps, 1),
                "charts/fallbacks": float(roll.fallbacks),
                "charts/mean_reward": float(buffer.rewards.mean()),
            }
            scalars = {**episode_stats, **{f"losses/{k}": v for k, v in train_stats.items()}}
            scalars = ctx.mean(scalars)
            scalars.update(
                {
                    "charts/learning_rate": lr,
                    "time/generate_s": roll.seconds_generate,
                    "time/env_s": roll.seconds_env,
                    "time/recompute_s": roll.seconds_recompute,
                    "time/update_s": seconds_update,
                    "time/update_total_s": time.time() - t_update,
                    "charts/generated_tokens": float(roll.generated_tokens),
                }
            )
            state["elapsed"] = elapsed_before + (time.time() - started)
            state["ppo_seconds"] += time.time() - t_update
            logger.log(state["update"], scalars, env_steps=state["env_steps"])
            if (
                cfg.eval.every
                and state["update"] % cfg.eval.every == 0
                and state["update"] < ppo_cfg.num_updates
            ):
                evaluate_and_log("eval", "eval")
            description = (
                f"success {scalars.get('charts/episode_success', math.nan):.2f} "
                f"return {scalars.get('charts/episode_return', math.nan):.2f} "
                f"kl {scalars.get('losses/approx_kl', math.nan):.4f} "
                f"fallback {scalars.get('charts/fallback_rate', math.nan):.2f}"
            )
            if progress is not None:
                progress.update(task, completed=state["update"], description=description)
            if (
                cfg.checkpoint_every
                and state["update"] % cfg.checkpoint_every == 0
                and state["update"] < ppo_cfg.num_updates
            ):
                state["elapsed"] = elapsed_before + (time.time() - started)
                save(state["update"])
            updates_this_process += 1
            if (
                cfg.stop_after_updates is not None
                and updates_this_process >= cfg.stop_after_updates
                and state["update"] < ppo_cfg.num_updates
            ):
                save(state["update"])
                if progress is not None:
                    progress.stop()
                    progress = None
                console.print(
                    f"stopping after {updates_this_process} updates (stop_after_updates); resume with --resume {run_dir}"
                )
                logger.close()
                return {"stopped_at": state["update"], "run_dir": str(run_dir)}
    finally:
        if progress is not None:
            progress.stop()
    for env in envs:
        env.close()

    final_eval = evaluate_and_log("eval", "final")
    ood = None
    if cfg.env.ood_kwargs:
        ood = evaluate_and_log("eval_ood", "final", {**cfg.env.kwargs, **cfg.env.ood_kwargs})
    state["elapsed"] = elapsed_before + (time.time() - started)
    save(state["update"])
    summary = _summary(cfg, run_dir, state, final_eval, ood, agent, ctx)
    summary["param_digest"] = {**param_digest(params), "initial_sha": initial_digest["sha"]}
    if ctx.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        logger.close()
        plot_learning_curve(
            read_jsonl(run_dir / "metrics.jsonl"),
            run_dir / "learning_curve.png",
            title=run_dir.name,
        )
    sft = summary["sft_success"]
    console.print(
        f"[bold]SFT start success {sft:.3f}  ->  final success {summary['final_success']:.3f}[/bold] "
        f"({summary['improvement_points']:+.1f} points; {summary['seconds']:.0f} s; {cfg.eval.episodes} episodes each)"
    )
    console.print(f"outputs: {run_dir}")
    return summary


def _summary(cfg, run_dir, state, final_eval, ood, agent, ctx) -> dict[str, Any]:
    sft_eval = state.get("sft_eval", {})
    n = agent.n_params
    flops = training_flops(
        n,
        d_init=0.0,
        d_sft=state["tokens_sft"],
        d_rl=state["tokens_rl"],
        d_buffer=state["tokens_buffer"],
    )
    # The RL run starts from the SFT checkpoint: its D_init is the SFT data.
    flops["flops_rl"] = training_flops(
        n, d_init=state["tokens_sft"], d_rl=state["tokens_rl"], d_buffer=state["tokens_buffer"]
    )["flops_rl"]
    summary = {
        "sft_success": sft_eval.get("success", math.nan),
        "final_success": final_eval["success"],
        "seconds": state["elapsed"],
        "seed": cfg.seed,
        "improvement_points": 100.0 * (final_eval["success"] - sft_eval.get("success", math.nan)),
        "sft_success_stderr": sft_eval.get("success_stderr", math.nan),
        "final_success_stderr": final_eval["success_stderr"],
        "sft_return": sft_eval.get("return", math.nan),
        "final_return": final_eval["return"],
        "sft_per_step_accuracy": sft_eval.get("per_step_accuracy", math.nan),
        "final_per_step_accuracy": final_eval["per_step_accuracy"],
        "sft_fallback_rate": sft_eval.get("fallback_rate", math.nan),
        "final_fallback_rate": final_eval["fallback_rate"],
        "eval_episodes": cfg.eval.episodes,
        "env": cfg.env.id,
        "model": cfg.model.name,
        "num_updates": state["update"],
        "env_steps": state["env_steps"],
        "sft_seconds": state["sft_seconds"],
        "ppo_seconds": state["ppo_seconds"],
        "world_size": ctx.world_size,
        "n_params": n,
        "tokens_sft": state["tokens_sft"],
        "tokens_rl": state["tokens_rl"],
        "tokens_buffer": state["tokens_buffer"],
        **flops,
        "run_dir": str(run_dir),
    }
    if ood is not None:
        summary["final_ood_success"] = ood["success"]
        summary["final_ood"] = ood
    summary["final_eval"] = final_eval
    summary["sft_eval"] = sft_eval
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


def parse_args(
    argv: list[str] | None, prog: str, description: str
) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Overrides: key=value, dotted for sections (ppo.lr=3e-5, env.kwargs.n_max=7); see --help-config.",
    )
    parser.add_argument(
        "--config", default=None, help="YAML preset (default: the CPU NumberLine preset)"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue a killed run from its newest checkpoint",
    )
    parser.add_argument(
        "--help-config",
        action="store_true",
        help="list every config key with its resolved value (preset + overrides) and meaning",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    return parser.parse_args(argv), []


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vlrl.train`` / ``vlrl-train``."""
    args, _ = parse_args(
        argv, "python -m vlrl.train", "SFT warm start + PPO for a VLM agent (Algorithm 1)."
    )
    resume = Path(args.resume) if args.resume else None
    try:
        if resume is not None:
            if not (resume / "config.yaml").is_file():
                raise ConfigError(f"--resume {resume}: no config.yaml there")
            # stop_after_updates belongs to one process, not to the run
            cfg = load_config(resume / "config.yaml", ["stop_after_updates=null", *args.overrides])
        else:
            path = args.config if args.config is not None else default_config_path()
            if path is None:
                print(
                    f"warning: the CPU preset {CPU_DEFAULT_PRESET} was not found beside the "
                    "package; using the dataclass defaults (the GPU card-game settings)",
                    file=sys.stderr,
                )
            cfg = load_config(path, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.help_config:
        print(describe(cfg))
        return 0
    run(cfg, resume=resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
