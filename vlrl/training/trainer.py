"""The training job (Algorithm 1): open the run, start or resume, SFT warm start, reference
policy, optimiser, the update loop with evaluations and checkpoints, the summary.

:func:`run` reads top to bottom like the algorithm; each step is one function below it.
Progress lives in :class:`RunProgress`, saved in every checkpoint under ``progress`` with
the same keys older runs wrote, so they still ``--resume``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from vlrl.config import TrainConfig, make_run_name, save_config
from vlrl.models import load_policy
from vlrl.reporting import Console, progress_bar, write_json
from vlrl.training import checkpoint as ckpt
from vlrl.training.agent import Agent
from vlrl.training.distributed import DistContext, setup
from vlrl.training.env_batch import EnvBatch, make_env_batch
from vlrl.training.evaluation import evaluate_config
from vlrl.training.optim import ScoreModule, make_optimizer, make_scheduler, param_digest
from vlrl.training.ppo import LossCoefficients
from vlrl.training.rollout import ITERATIONS, Iteration, cut_verification_budget
from vlrl.training.run_log import RunLogger, plot_learning_curve, read_jsonl, training_flops
from vlrl.training.sft import run_sft
from vlrl.training.stopping import StopRequest
from vlrl.training.vlm_agent import VLMAgent, build_agent


@dataclass
class RunProgress:
    """Counters of a run, saved with every checkpoint (``progress``)."""

    update: int = 0
    env_steps: int = 0
    sft_seconds: float = 0.0
    ppo_seconds: float = 0.0
    tokens_rl: int = 0
    tokens_buffer: int = 0
    tokens_sft: int = 0
    elapsed: float = 0.0  # seconds over every process of the run (resumes included)
    sft_loss: float | None = None
    sft_eval: dict[str, float] = field(default_factory=dict)
    sft_eval_seconds: float = 0.0

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunProgress:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})

    def to_state(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSession:
    """What every step of a run shares: where it writes, who prints, the rank context."""

    cfg: TrainConfig
    ctx: DistContext
    run_dir: Path
    console: Console
    logger: RunLogger
    started: float
    elapsed_before: float = 0.0  # seconds spent by earlier processes of this run
    stop: StopRequest = field(default_factory=StopRequest)  # set by SIGINT/SIGTERM/SIGHUP
    saved_update: int | None = None  # the update of the newest checkpoint on disk
    sft_state: dict[str, Any] | None = None  # the SFT loop's state, resuming during SFT

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def elapsed(self) -> float:
        return self.elapsed_before + (time.time() - self.started)

    def notice(self, message: str) -> None:
        """A line on stderr from the main rank, shown with or without ``progress``."""
        if self.ctx.is_main:
            print(message, file=sys.stderr, flush=True)

    def stop_requested(self) -> bool:
        """Whether a signal asked the run to stop (any rank's: a collective on several, so
        every rank must ask at the same points)."""
        if self.ctx.world_size > 1:
            return self.ctx.sum({"stop": float(self.stop.requested)})["stop"] > 0
        return self.stop.requested

    def stop_cause(self) -> str:
        return f"stopped by {self.stop.name}" if self.stop.requested else "stopped by a signal"


@dataclass
class Optimisation:
    """The trainable parameters, their optimiser and schedule, and the engine hooks."""

    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    coef: LossCoefficients
    engine: dict[str, Callable] | None = None


def run(
    cfg: TrainConfig, resume: Path | None = None, stop: StopRequest | None = None
) -> dict[str, Any]:
    """The whole job: (resume or) SFT warm start, RL updates, evaluations, summary. ``stop``
    (a signal sets it: :func:`vlrl.training.stopping.graceful_stop`) ends it at the next
    checkpoint; it then returns ``stopped_at`` and ``signal``, and ``--resume`` goes on."""
    session = open_run(cfg, resume, stop)
    agent, progress, saved = start_or_resume(session, resume)
    if saved is None and (why := warm_start(session, agent, progress)):
        return stop_run(session, progress, why)
    attach_reference_policy(session, agent)
    opt = build_optimisation(session, agent, saved)
    initial_digest = param_digest(opt.params)
    envs = make_env_batch(cfg.env.id, cfg.env.num_envs, agent.env_kwargs(cfg.env.kwargs))
    if why := cut_verification_budget(cfg):
        session.notice(f"warning: {why}")
    if saved is None:
        progress.elapsed = session.elapsed()
        save_checkpoint(session, agent, opt, progress)
    stopped = update_loop(session, agent, opt, envs, progress)
    envs.close()
    if stopped:
        return stop_run(session, progress, stopped)
    final, ood = evaluate_variants(session, agent, progress, "final")
    progress.elapsed = session.elapsed()
    save_checkpoint(session, agent, opt, progress)
    summary = build_summary(session, progress, final, ood, agent.n_params)
    summary["param_digest"] = {**param_digest(opt.params), "initial_sha": initial_digest["sha"]}
    finish_run(session, summary)
    return summary


def open_run(cfg: TrainConfig, resume: Path | None, stop: StopRequest | None = None) -> RunSession:
    """Rank context, threads, the run folder (rank 0 names it), its config and logger. A
    resumed run's ``config.yaml`` is never rewritten (``resumes.jsonl`` records resumes)."""
    started = time.time()
    ctx = setup(
        cfg.device, cfg.distributed.timeout_s, cfg.distributed.cpu, cfg.distributed.mixed_precision
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(resume) if resume is not None else Path(cfg.out_dir) / make_run_name(cfg)
    if resume is None and ctx.world_size > 1:
        run_dir = Path(ctx.broadcast_object(str(run_dir)))  # every rank writes rank 0's folder
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume is None:
            save_config(cfg, run_dir / "config.yaml")
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard, enabled=ctx.is_main)
    ckpt.seed_everything(ctx.rank_seed(cfg.seed))
    console = Console(cfg.progress and ctx.is_main)
    return RunSession(cfg, ctx, run_dir, console, logger, started, stop=stop or StopRequest())


def start_or_resume(
    session: RunSession, resume: Path | None
) -> tuple[Agent, RunProgress, dict[str, Any] | None]:
    """A fresh agent, or (``--resume``) the agent, progress and trainer state of
    :func:`resume_point` (trainer state None when resuming during SFT or from nothing)."""
    cfg, ctx = session.cfg, session.ctx
    found = resume_point(session) if resume is not None else None
    if found is None:
        agent, progress, saved = build_agent(cfg, device=ctx.device), RunProgress(), None
    else:
        agent, progress, saved = found
    session.elapsed_before = float(progress.elapsed)
    session.console.print(
        f"run [bold]{session.run_dir}[/bold]  env {cfg.env.id}  model {cfg.model.name}  "
        f"params {agent.n_params:,}"
    )
    return agent, progress, saved


def resume_point(
    session: RunSession,
) -> tuple[Agent, RunProgress, dict[str, Any] | None] | None:
    """Where ``--resume`` goes on: the newest update checkpoint that loads whole, else the
    SFT checkpoint of a run stopped during SFT (trainer state None); None when the run was
    stopped before its first checkpoint (it starts again from the beginning, in its folder).
    Checkpoints that do not load are reported (which file, why) and renamed ``corrupt-*``;
    when none loads, :class:`~vlrl.training.checkpoint.CheckpointError` lists them. The log
    is rewound to the point resumed from, so no update is logged twice."""
    cfg, ctx, root = session.cfg, session.ctx, session.checkpoints

    def load(folder: Path) -> tuple[Agent, dict[str, Any]]:
        state = ckpt.load_state(folder)
        RunProgress.from_state(state["progress"])
        policy = str(folder / ckpt.POLICY_DIR)
        return build_agent(cfg, policy_path=policy, device=ctx.device), state

    def warn(message: str) -> None:
        session.notice(f"warning: {message}")

    kind = ckpt.UPDATE
    candidates = ckpt.checkpoint_candidates(root, kind)
    found = ckpt.load_newest(root, load, warn, kind)
    if found is None:
        kind = ckpt.SFT
        candidates = ckpt.checkpoint_candidates(root, kind)
        found = ckpt.load_newest(root, load, warn, kind)
    name = found[0].name if found is not None else None
    if ctx.broadcast_object(name) != name:
        raise ckpt.CheckpointError(f"rank {ctx.rank} resumes from {name}, rank 0 does not")
    if found is None:
        session.notice(
            f"{session.run_dir} holds no checkpoint: the run was stopped before its first "
            "one (during SFT or the start evaluation); it starts again from the beginning"
        )
        session.logger.rewind()
        session.logger.note_resume(checkpoint=None)
        return None
    folder, (agent, state) = found
    skipped = candidates[: candidates.index(folder)]
    if ctx.is_main:
        for bad in skipped:
            warn(f"{bad.name} is kept as {ckpt.quarantine(bad).name} (not loadable)")
    progress = RunProgress.from_state(state["progress"])
    if kind == ckpt.SFT:
        session.sft_state, saved = state["sft"], None
        session.logger.rewind(sft_step=int(state["sft"]["step"]))
        where = f"SFT step {session.sft_state['step']}"
    else:
        saved, session.saved_update = state, progress.update
        session.logger.rewind(update=progress.update)
        where = f"update {progress.update}"
    session.logger.note_resume(checkpoint=folder.name, skipped=[p.name for p in skipped])
    session.notice(f"resumed {folder} ({where})")
    return agent, progress, saved


def warm_start(session: RunSession, agent: Agent, progress: RunProgress) -> str | None:
    """SFT on expert data (when enabled), then the paired evaluation of the start policy.
    Returns None, or why the run stops: a stop request during SFT (an SFT checkpoint is
    written, from which ``--resume`` continues SFT)."""
    cfg, ctx = session.cfg, session.ctx
    if cfg.sft.enabled and cfg.model.name != "cnn" and cfg.init_from is None:
        t0 = time.time()
        stats = run_sft(
            agent.policy,
            cfg,
            logger=session.logger,
            seed=ctx.rank_seed(cfg.seed),
            ctx=ctx,
            progress=session.console.enabled,
            resume_state=session.sft_state,
            should_stop=session.stop_requested,
        )
        progress.sft_seconds += time.time() - t0
        if "stopped_at" in stats:
            save_sft_checkpoint(session, agent, progress, stats)
            return f"{session.stop_cause()} during SFT, after step {stats['stopped_at']} of {stats['steps']}"
        progress.tokens_sft = stats["tokens"]
        progress.sft_loss = stats["final_loss"]
    t0 = time.time()
    start, _ood = evaluate_variants(session, agent, progress, "sft_start")
    progress.sft_eval = start
    progress.sft_eval_seconds = time.time() - t0
    session.console.print(
        f"SFT start: success {start['success']:.3f} ± {start['success_stderr']:.3f} "
        f"(return {start['return']:.2f}, per-step acc {start['per_step_accuracy']:.3f}, "
        f"fallback {start['fallback_rate']:.3f}; {cfg.eval.episodes} episodes, "
        f"{progress.sft_eval_seconds:.0f} s)"
    )
    if cfg.ppo.kl_coef > 0 and ctx.is_main and isinstance(agent, VLMAgent):
        agent.save(session.run_dir / "initial_policy")
    ctx.barrier()
    return None


def save_sft_checkpoint(
    session: RunSession, agent: Agent, progress: RunProgress, stats: dict[str, Any]
) -> None:
    """The checkpoint of a run stopped during SFT: the policy, the SFT loop's state (main
    rank's generators) and the progress; the first update checkpoint supersedes it."""
    if session.ctx.is_main:
        ckpt.save_checkpoint(
            session.checkpoints,
            stats["stopped_at"],
            agent.save,
            {"sft": stats["state"], "progress": progress.to_state()},
            keep=1,
            kind=ckpt.SFT,
        )
    session.ctx.barrier()


def attach_reference_policy(session: RunSession, agent: Agent) -> None:
    """With a KL term, the frozen start policy (saved by :func:`warm_start`) as reference."""
    cfg, ctx = session.cfg, session.ctx
    if cfg.ppo.kl_coef <= 0 or not isinstance(agent, VLMAgent):
        return
    ref = load_policy(
        str(session.run_dir / "initial_policy"), device=str(ctx.device), seed=cfg.seed
    )
    for p in ref.parameters():
        p.requires_grad_(False)
    ref.eval()
    agent.ref_policy = ref


def build_optimisation(
    session: RunSession, agent: Agent, saved: dict[str, Any] | None
) -> Optimisation:
    """Adam over the trainable parameters (the value head at its own lr), the schedule,
    their resumed state, and DeepSpeed/FSDP preparation when the run is sharded."""
    cfg, ctx = session.cfg, session.ctx
    ppo = cfg.ppo
    params = agent.parameters()
    optimizer = make_optimizer(
        params, ppo.lr, ppo.adam_eps, ppo.weight_decay, agent.value_parameters(), ppo.vf_lr
    )
    scheduler = make_scheduler(optimizer, ppo.num_updates, ppo.lr, ppo.lr_min, ppo.lr_schedule)
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
    coef = LossCoefficients.from_config(ppo)
    return Optimisation(params, optimizer, scheduler, coef, engine)


def save_checkpoint(
    session: RunSession, agent: Agent, opt: Optimisation, progress: RunProgress
) -> None:
    ckpt.require_finite(opt.params, progress.update, session.checkpoints)  # NaN never saved
    session.saved_update = progress.update
    if not session.ctx.is_main:
        return
    try:
        ckpt.save_checkpoint(
            session.checkpoints,
            progress.update,
            agent.save,
            {
                "optimizer": opt.optimizer.state_dict(),
                "scheduler": opt.scheduler.state_dict(),
                "progress": progress.to_state(),
            },
            keep=session.cfg.keep_checkpoints,
        )
    except ckpt.CheckpointError as error:
        raise ckpt.CheckpointError(
            f"{error}; once there is room, --resume {session.run_dir} goes on from it"
        ) from error


def evaluate_variants(
    session: RunSession, agent: Agent, progress: RunProgress, phase: str
) -> tuple[dict[str, float], dict[str, float] | None]:
    """The paired evaluation in-distribution (``eval/*``) and, when ``env.ood_kwargs`` is
    set, out-of-distribution (``eval_ood/*``), logged at the current update."""
    cfg = session.cfg
    variants = [("eval", None)]
    if cfg.env.ood_kwargs:
        variants.append(("eval_ood", {**cfg.env.kwargs, **cfg.env.ood_kwargs}))
    results: list[dict[str, float]] = []
    for prefix, env_kwargs in variants:
        result = session.ctx.mean(evaluate_config(agent, cfg, env_kwargs))
        session.logger.log(
            progress.update,
            {f"{prefix}/{k}": v for k, v in result.items()},
            env_steps=progress.env_steps,
            phase=phase,
        )
        results.append(result)
    return results[0], (results[1] if len(results) > 1 else None)


def update_loop(
    session: RunSession, agent: Agent, opt: Optimisation, envs: EnvBatch, progress: RunProgress
) -> str | None:
    """RL updates until ``ppo.num_updates``. A stop request (checked before each update and
    after the last) or ``stop_after_updates`` ends it at a checkpoint of the last completed
    update: the reason is returned (None when all updates ran)."""
    cfg, ctx = session.cfg, session.ctx
    total = cfg.ppo.num_updates
    multi = ctx.world_size > 1
    done_here = 0
    with progress_bar(
        "PPO", total, enabled=session.console.enabled, completed=progress.update, transient=False
    ) as advance:
        while progress.update < total and not session.stop_requested():
            t_update = time.time()
            it = ITERATIONS[cfg.ppo.algo](  # ppo, or a group method (grpo, rloo, gigpo)
                agent,
                envs,
                cfg,
                progress.update,
                ctx.rank_seed(cfg.seed),
                opt.params,
                opt.optimizer,
                opt.coef,
                reduce_grads=(lambda: ctx.reduce_grads(opt.params)) if multi else None,
                engine=opt.engine,
                rank_mean=(lambda v: ctx.mean({"kl": v})["kl"]) if multi else None,
            )
            lr = opt.scheduler.get_last_lr()[0]
            opt.scheduler.step()
            scalars = record_update(session, progress, it, lr, time.time() - t_update)
            ckpt.require_finite(opt.params, progress.update, session.checkpoints)
            if cfg.eval.every and progress.update % cfg.eval.every == 0 and progress.update < total:
                evaluate_variants(session, agent, progress, "eval")
            advance(1, progress_note(scalars))
            if (
                cfg.checkpoint_every
                and progress.update % cfg.checkpoint_every == 0
                and progress.update < total
            ):
                progress.elapsed = session.elapsed()
                save_checkpoint(session, agent, opt, progress)
            done_here += 1
            limit = cfg.stop_after_updates
            if limit is not None and done_here >= limit and progress.update < total:
                why = f"stopping after {done_here} updates (stop_after_updates)"
                return checkpoint_and_stop(session, agent, opt, progress, why)
    if session.stop_requested():
        return checkpoint_and_stop(session, agent, opt, progress, session.stop_cause())
    return None


def checkpoint_and_stop(
    session: RunSession, agent: Agent, opt: Optimisation, progress: RunProgress, why: str
) -> str:
    """A checkpoint of the last completed update (unless it is on disk already)."""
    if session.saved_update != progress.update:
        progress.elapsed = session.elapsed()
        save_checkpoint(session, agent, opt, progress)
    return f"{why}, at update {progress.update} of {session.cfg.ppo.num_updates}"


def stop_run(session: RunSession, progress: RunProgress, why: str) -> dict[str, Any]:
    """The end of a stopped run: the log closed, one line saying how to resume."""
    session.logger.close()
    session.notice(f"{why}; resume with: python -m vlrl.train --resume {session.run_dir}")
    return {
        "stopped_at": progress.update,
        "run_dir": str(session.run_dir),
        "signal": session.stop.signum,
    }


def record_update(
    session: RunSession, progress: RunProgress, it: Iteration, lr: float, seconds_total: float
) -> dict[str, float]:
    """Advance the counters by one update and log its scalars (rank means)."""
    ctx, roll = session.ctx, it.rollout
    progress.update += 1
    progress.env_steps += roll.steps * ctx.world_size
    progress.tokens_buffer += roll.tokens * ctx.world_size
    progress.tokens_rl += roll.tokens * session.cfg.ppo.update_epochs * ctx.world_size
    # Training success: each env's first episode of the rollout, played to its end.
    scalars = {
        **{f"charts/{k}": v for k, v in it.tracker.means(it.tracker.first).items()},
        "charts/episodes": float(len(it.tracker.first)),
        "charts/fallback_rate": roll.fallbacks / max(roll.steps, 1),
        "charts/fallbacks": float(roll.fallbacks),
        "charts/mean_reward": float(it.buffer.rewards.mean()),
        **{f"losses/{k}": v for k, v in it.stats.items()},
        **it.scalars,
    }
    scalars = ctx.mean(scalars)
    scalars.update(
        {
            "charts/learning_rate": lr,
            "time/generate_s": roll.seconds_generate,
            "time/env_s": roll.seconds_env,
            "time/recompute_s": roll.seconds_recompute,
            "time/finish_episodes_s": roll.seconds_finish,
            "time/update_s": it.seconds_update,
            "time/update_total_s": seconds_total,
            "charts/generated_tokens": float(roll.generated_tokens),
        }
    )
    progress.elapsed = session.elapsed()
    progress.ppo_seconds += seconds_total
    session.logger.log(progress.update, scalars, env_steps=progress.env_steps)
    return scalars


def progress_note(scalars: dict[str, float]) -> str:
    """The progress bar's text after an update."""
    return (
        f"success {scalars.get('charts/episode_success', math.nan):.2f} "
        f"return {scalars.get('charts/episode_return', math.nan):.2f} "
        f"kl {scalars.get('losses/approx_kl', math.nan):.4f} "
        f"fallback {scalars.get('charts/fallback_rate', math.nan):.2f}"
    )


def build_summary(
    session: RunSession,
    progress: RunProgress,
    final: dict[str, float],
    ood: dict[str, float] | None,
    n_params: int,
) -> dict[str, Any]:
    """``summary.json``: start vs final success, compute, counters (NaN -> None)."""
    cfg = session.cfg
    start = progress.sft_eval
    flops = training_flops(
        n_params,
        d_init=0.0,
        d_sft=progress.tokens_sft,
        d_rl=progress.tokens_rl,
        d_buffer=progress.tokens_buffer,
    )
    # The RL run starts from the SFT checkpoint: its D_init is the SFT data.
    flops["flops_rl"] = training_flops(
        n_params,
        d_init=progress.tokens_sft,
        d_rl=progress.tokens_rl,
        d_buffer=progress.tokens_buffer,
    )["flops_rl"]
    summary = {
        "sft_success": start.get("success", math.nan),
        "final_success": final["success"],
        "seconds": progress.elapsed,
        "seed": cfg.seed,
        "improvement_points": 100.0 * (final["success"] - start.get("success", math.nan)),
        "sft_success_stderr": start.get("success_stderr", math.nan),
        "final_success_stderr": final["success_stderr"],
        "sft_return": start.get("return", math.nan),
        "final_return": final["return"],
        "sft_per_step_accuracy": start.get("per_step_accuracy", math.nan),
        "final_per_step_accuracy": final["per_step_accuracy"],
        "sft_fallback_rate": start.get("fallback_rate", math.nan),
        "final_fallback_rate": final["fallback_rate"],
        "eval_episodes": cfg.eval.episodes,
        "env": cfg.env.id,
        "model": cfg.model.name,
        "num_updates": progress.update,
        "env_steps": progress.env_steps,
        "sft_seconds": progress.sft_seconds,
        "ppo_seconds": progress.ppo_seconds,
        "world_size": session.ctx.world_size,
        "n_params": n_params,
        "tokens_sft": progress.tokens_sft,
        "tokens_rl": progress.tokens_rl,
        "tokens_buffer": progress.tokens_buffer,
        **flops,
        "run_dir": str(session.run_dir),
    }
    if ood is not None:
        summary["final_ood_success"] = ood["success"]
        summary["final_ood"] = ood
    summary["final_eval"] = final
    summary["sft_eval"] = start
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()}


def finish_run(session: RunSession, summary: dict[str, Any]) -> None:
    """summary.json and the learning curve (main rank), then the closing line."""
    run_dir = session.run_dir
    if session.ctx.is_main:
        write_json(run_dir / "summary.json", summary)
        session.logger.close()
        plot_learning_curve(
            read_jsonl(run_dir / "metrics.jsonl"),
            run_dir / "learning_curve.png",
            title=run_dir.name,
        )
    session.console.print(
        f"[bold]SFT start success {summary['sft_success']:.3f}  ->  final success "
        f"{summary['final_success']:.3f}[/bold] ({summary['improvement_points']:+.1f} points; "
        f"{summary['seconds']:.0f} s; {session.cfg.eval.episodes} episodes each)"
    )
    session.console.print(f"outputs: {run_dir}")
