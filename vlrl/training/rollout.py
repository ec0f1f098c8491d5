"""Rollout collection and one RL iteration (Algorithm 1, one k): reset the envs, collect
B transitions into the buffer, compute advantages, run the update epochs.

Two iterations share everything past the advantages (the λ-weighted log-prob, the clipped
ratio, the KL to the reference, the update loop): :func:`ppo_iteration` (a T x N buffer,
GAE with the value head) and :func:`group_iteration` (whole episodes in groups that start
from one seed, the advantage estimator ``ppo.algo`` names). :data:`ITERATIONS` maps
``ppo.algo`` to one of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vlrl.config import TrainConfig
from vlrl.envs.general_points import DEFAULT_MAX_VERIFY
from vlrl.training.advantages import (
    ESTIMATORS,
    AdvantageOptions,
    GroupSteps,
    anchor_share,
    estimator,
    group_statistics,
    informative,
)
from vlrl.training.agent import Agent
from vlrl.training.buffer import EpisodeBuffer, RolloutBuffer
from vlrl.training.checkpoint import derive_seed, seed_everything
from vlrl.training.env_batch import EnvBatch
from vlrl.training.episodes import EpisodeTracker
from vlrl.training.ppo import LossCoefficients, ppo_update


@dataclass
class RolloutStats:
    seconds_generate: float = 0.0
    seconds_env: float = 0.0
    seconds_recompute: float = 0.0
    seconds_finish: float = 0.0  # generation that plays first episodes past the buffer
    generated_tokens: int = 0
    fallbacks: int = 0
    steps: int = 0
    tokens: int = 0


def collect_rollout(
    agent: Agent,
    envs: EnvBatch,
    observations: list[Any],
    buffer: RolloutBuffer,
    tracker: EpisodeTracker,
    temperature: float,
) -> RolloutStats:
    """Fill ``buffer`` with num_steps steps of every env (Algorithm 1, lines 8-20), then
    play each env's first episode to its end without storing it (see :func:`finish_first_episodes`).

    ``tracker`` records every finished episode; its ``first`` list holds each env's first
    episode only: the length-unbiased sample that training success is measured on.
    """
    stats = RolloutStats()
    first_open = np.ones(envs.num_envs, bool)
    for _t in range(buffer.num_steps):
        act = agent.act(envs, observations, temperature=temperature)
        stats.seconds_generate += act.seconds_generate
        stats.seconds_recompute += act.seconds_recompute
        stats.generated_tokens += act.generated_tokens
        started = time.perf_counter()
        step = envs.step(act.actions)
        dones = step.dones
        for i in range(envs.num_envs):
            info = step.infos[i]
            stats.fallbacks += int(act.fallbacks[i] or bool(info.get("used_fallback", False)))
            episode = tracker.step(i, float(step.rewards[i]), bool(dones[i]), info)
            if episode is not None and first_open[i]:
                tracker.first.append(episode)
                first_open[i] = False
        observations = step.observations
        stats.seconds_env += time.perf_counter() - started
        stats.steps += envs.num_envs
        stats.tokens += sum(agent.token_count(p) for p in act.payloads)
        buffer.add(act.payloads, act.logprob, act.values, rewards=step.rewards, dones=dones)
    buffer.set_bootstrap(agent.values(envs, observations))
    finish_first_episodes(agent, envs, observations, tracker, first_open, temperature, stats)
    return stats


def finish_first_episodes(
    agent: Agent,
    envs: EnvBatch,
    observations: list[Any],
    tracker: EpisodeTracker,
    first_open: np.ndarray,
    temperature: float,
    stats: RolloutStats,
) -> None:
    """Play on the envs whose first episode outlived the buffer, until each ends.

    Counting only episodes that finish inside the buffer over-represents short ones (in
    NumberLine: the successful ones), so training success counts each env's first episode
    wherever it ends. These steps are not stored and do not count as transitions.
    """
    ids = [int(i) for i in np.flatnonzero(first_open)]
    current = {i: observations[i] for i in ids}
    while ids:
        act = agent.act(
            envs, [current[i] for i in ids], ids=ids, temperature=temperature, need_logprob=False
        )
        stats.seconds_finish += act.seconds_generate
        step = envs.step(act.actions, ids=ids)
        still_open = []
        for j, i in enumerate(ids):
            episode = tracker.step(i, float(step.rewards[j]), bool(step.dones[j]), step.infos[j])
            if episode is None:
                current[i] = step.observations[j]
                still_open.append(i)
            else:
                tracker.first.append(episode)
        ids = still_open


@dataclass
class Iteration:
    """One iteration's rollout statistics, storage (a RolloutBuffer, or the group methods'
    EpisodeBuffer; both have ``rewards``), update statistics (``losses/*``) and further
    scalars to log under their own names (the group methods' ``charts/*``)."""

    rollout: RolloutStats
    tracker: EpisodeTracker
    buffer: RolloutBuffer | EpisodeBuffer
    stats: dict[str, float]
    seconds_update: float
    scalars: dict[str, float] = field(default_factory=dict)


def ppo_iteration(
    agent: Agent,
    envs: EnvBatch,
    cfg: TrainConfig,
    update: int,
    rank_seed: int,
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    coef: LossCoefficients,
    reduce_grads: Callable[[], None] | None = None,
    engine: dict | None = None,
    rank_mean: Callable[[float], float] | None = None,
) -> Iteration:
    """Algorithm 1, one k: reset the envs, collect B transitions, GAE, PPO epochs.

    Everything random derives from (rank seed, update index), so a resumed run repeats
    exactly what the uninterrupted one would have done.
    """
    ppo_cfg = cfg.ppo
    num_envs = envs.num_envs
    num_steps = max(1, math.ceil(ppo_cfg.buffer_size / num_envs))
    seed_update(agent, rank_seed, update)
    observations = envs.reset([derive_seed(rank_seed, update, 4, i) for i in range(num_envs)])
    tracker = EpisodeTracker(num_envs)
    buffer = RolloutBuffer(num_steps, num_envs)
    agent.train(False)
    roll = collect_rollout(agent, envs, observations, buffer, tracker, ppo_cfg.temperature)
    batch = buffer.to_batch(ppo_cfg.gamma, ppo_cfg.gae_lambda)
    stats, seconds = run_epochs(
        agent,
        batch,
        ppo_cfg,
        rank_seed,
        update,
        params,
        optimizer,
        coef,
        reduce_grads,
        engine,
        rank_mean,
        norm_adv=ppo_cfg.norm_adv,
    )
    return Iteration(roll, tracker, buffer, stats, seconds)


def cut_verification_budget(cfg: TrainConfig) -> str | None:
    """Why PPO's rollouts cannot hold a GeneralPoints hand's whole verification budget, or
    None. Algorithm 1 resets every env at each update, so an env plays
    ceil(buffer_size / num_envs) answers per update; a hand may take max_verify + 1, and
    tries past the cut are never trained on (measured: budgets of 5 and 10 trained on
    identical data with 32 envs and a buffer of 128). Group methods play whole episodes."""
    if cfg.ppo.algo != "ppo" or cfg.env.id != "vlrl/GeneralPoints-v0":
        return None
    answers = int(cfg.env.kwargs.get("max_verify", DEFAULT_MAX_VERIFY)) + 1
    per_env = max(1, math.ceil(cfg.ppo.buffer_size / cfg.env.num_envs))
    if answers <= per_env:
        return None
    return (
        f"ppo.buffer_size {cfg.ppo.buffer_size} over env.num_envs {cfg.env.num_envs} gives each "
        f"env {per_env} answers per update (the envs are reset every update), fewer than the "
        f"{answers} a hand may take with max_verify {answers - 1}: the later tries are never "
        f"trained on; use at most {cfg.ppo.buffer_size // answers} envs or a larger buffer"
    )


def seed_update(agent: Agent, rank_seed: int, update: int) -> None:
    """Seed everything random in update ``update`` from (rank seed, update index): the
    global generators, f's fallback draws and sampling. This is what makes a resumed run
    repeat the uninterrupted one."""
    seed_everything(derive_seed(rank_seed, update, 1))
    agent.rng = np.random.default_rng(derive_seed(rank_seed, update, 2))
    agent.sample_seed = derive_seed(rank_seed, update, 3)


def run_epochs(
    agent: Agent,
    batch: Any,
    ppo_cfg: Any,
    rank_seed: int,
    update: int,
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    coef: LossCoefficients,
    reduce_grads: Callable[[], None] | None,
    engine: dict | None,
    rank_mean: Callable[[float], float] | None,
    **options: Any,
) -> tuple[dict[str, float], float]:
    """The clipped-ratio epochs over ``batch`` (PPO and the group methods alike); returns
    the update statistics and its seconds. ``options`` are the method's own ppo_update
    arguments (advantage normalisation, loss aggregation, ...)."""
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
        target_kl=ppo_cfg.target_kl,
        reduce_grads=reduce_grads,
        rank_mean=rank_mean,
        **options,
        **(engine or {}),
    )
    return stats, time.time() - started


# ------------------------------------------------------------------ group methods

# A safety net: every env ends its episodes (time limits, verification budgets).
MAX_EPISODE_STEPS = 10_000

# A method's own defaults where its keys are null (see PPOConfig's help texts).
STD_NORMALIZE = {"grpo": True, "rloo": False, "gigpo": False}
# Every episode weighs the same: weighing transitions (or tokens) equally lets long, failed
# episodes dominate, the mean advantage per transition turns negative, and on the CPU
# NumberLine preset the JSON format broke (fallback 7% -> 50% in 30 updates; docs/group_rl.md).
DEFAULT_LOSS_AGG = "episode_mean_token_mean"


def output_tokens(agent: Agent, payload: Any) -> int:
    """Generated tokens of a transition (1 for an agent that picks an action index)."""
    count = getattr(agent, "output_tokens", None)
    return int(count(payload)) if count is not None else 1


def group_seeds(
    rank_seed: int, update: int, round_index: int, num_envs: int, group_size: int
) -> list[int]:
    """One reset seed per env slot: slots g*G .. g*G+G-1 share group g's seed."""
    return [
        derive_seed(rank_seed, update, 4, round_index, slot // group_size)
        for slot in range(num_envs)
    ]


def play_episodes(
    agent: Agent,
    envs: EnvBatch,
    observations: list[Any],
    temperature: float,
    stats: RolloutStats,
    tracker: EpisodeTracker,
) -> list[list[tuple]]:
    """Every slot plays one whole episode from ``observations``; returns per slot its
    transitions (payload, rollout log-prob, reward, state key before the step, output
    tokens). A slot that finished is no longer asked (the batch may auto-reset it)."""
    n = envs.num_envs
    episodes: list[list[tuple]] = [[] for _ in range(n)]
    current = dict(enumerate(observations))
    ids = list(range(n))
    for i in ids:
        tracker.start(i)
    for _t in range(MAX_EPISODE_STEPS):
        if not ids:
            return episodes
        keys = envs.state_keys(ids)
        act = agent.act(envs, [current[i] for i in ids], ids=ids, temperature=temperature)
        stats.seconds_generate += act.seconds_generate
        stats.seconds_recompute += act.seconds_recompute
        stats.generated_tokens += act.generated_tokens
        started = time.perf_counter()
        step = envs.step(act.actions, ids=ids)
        still_open = []
        for j, i in enumerate(ids):
            info = step.infos[j]
            stats.fallbacks += int(act.fallbacks[j] or bool(info.get("used_fallback", False)))
            payload = act.payloads[j]
            stats.tokens += agent.token_count(payload)
            reward = float(step.rewards[j])
            episodes[i].append(
                (payload, float(act.logprob[j]), reward, keys[j], output_tokens(agent, payload))
            )
            episode = tracker.step(i, reward, bool(step.dones[j]), info)
            if episode is None:
                current[i] = step.observations[j]
                still_open.append(i)
            else:
                tracker.first.append(episode)
        stats.seconds_env += time.perf_counter() - started
        stats.steps += len(ids)
        ids = still_open
    raise RuntimeError(f"an episode ran past {MAX_EPISODE_STEPS} steps without ending")


def collect_group_rollout(
    agent: Agent,
    envs: EnvBatch,
    seeds: Callable[[int], list[int]],
    group_size: int,
    min_transitions: int,
    temperature: float,
) -> tuple[RolloutStats, EpisodeTracker, EpisodeBuffer]:
    """Rounds of whole episodes until ``min_transitions`` are stored: in each round every
    slot resets with ``seeds(round)`` (group members share a seed, so they start from the
    same state) and plays one episode to its end. Every episode counts in ``tracker.first``
    (training success), none is cut short."""
    n = envs.num_envs
    groups_per_round = n // group_size
    stats = RolloutStats()
    tracker = EpisodeTracker(n)
    storage = EpisodeBuffer()
    round_index = 0
    while round_index == 0 or storage.size < min_transitions:
        observations = envs.reset(seeds(round_index))
        episodes = play_episodes(agent, envs, observations, temperature, stats, tracker)
        for slot, transitions in enumerate(episodes):
            storage.add_episode(
                transitions,
                episode=round_index * n + slot,
                group=round_index * groups_per_round + slot // group_size,
            )
        round_index += 1
    return stats, tracker, storage


def advantage_options(ppo_cfg: Any) -> AdvantageOptions:
    """The estimator knobs of a PPOConfig, nulls resolved to the method's defaults."""
    std = ppo_cfg.std_normalize
    return AdvantageOptions(
        std_normalize=STD_NORMALIZE[ppo_cfg.algo] if std is None else bool(std),
        gamma=ppo_cfg.gigpo_gamma,
        omega=ppo_cfg.gigpo_omega,
    )


def group_iteration(
    agent: Agent,
    envs: EnvBatch,
    cfg: TrainConfig,
    update: int,
    rank_seed: int,
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    coef: LossCoefficients,
    reduce_grads: Callable[[], None] | None = None,
    engine: dict | None = None,
    rank_mean: Callable[[float], float] | None = None,
) -> Iteration:
    """Algorithm 1, one k, for a group method: groups of whole episodes from shared seeds,
    the advantages of the estimator ``ppo.algo`` names, the clipped-ratio epochs.

    Randomness derives from (rank seed, update index) exactly as in :func:`ppo_iteration`,
    so a resumed run repeats the uninterrupted one. The number of minibatches per epoch is
    fixed by the config (ceil(buffer_size / minibatch_size)): ranks collect different
    numbers of transitions but must take the same number of optimizer steps.
    """
    ppo_cfg = cfg.ppo
    seed_update(agent, rank_seed, update)
    agent.train(False)
    size = ppo_cfg.group_size
    roll, tracker, storage = collect_group_rollout(
        agent,
        envs,
        lambda r: group_seeds(rank_seed, update, r, envs.num_envs, size),
        size,
        ppo_cfg.buffer_size,
        ppo_cfg.temperature,
    )
    steps = storage.steps()
    advantages = estimator(ppo_cfg.algo)(steps, advantage_options(ppo_cfg))
    keep = informative(steps, advantages) if ppo_cfg.drop_equal_groups else None
    batch = storage.to_batch(advantages, keep)
    stats, seconds = run_epochs(
        agent,
        batch,
        ppo_cfg,
        rank_seed,
        update,
        params,
        optimizer,
        coef,
        reduce_grads,
        engine,
        rank_mean,
        norm_adv=False,  # the estimators normalise within groups
        num_minibatches=max(1, math.ceil(ppo_cfg.buffer_size / ppo_cfg.minibatch_size)),
        loss_agg=ppo_cfg.loss_agg or DEFAULT_LOSS_AGG,
        norm_length=ppo_cfg.max_new_tokens,
    )
    stats.pop("explained_variance", None)  # no value is learned
    scalars = group_scalars(steps, advantages, keep, ppo_cfg.algo)
    return Iteration(roll, tracker, storage, stats, seconds, scalars)


def group_scalars(
    steps: GroupSteps, advantages: np.ndarray, keep: np.ndarray | None, algo: str
) -> dict[str, float]:
    """``charts/*`` of a group rollout: return spread within groups, share of degenerate
    groups, the advantages trained on, and (GiGPO) the share of steps in anchor groups."""
    out = {f"charts/{k}": v for k, v in group_statistics(steps).items()}
    trained = advantages if keep is None else advantages[keep]
    out["charts/advantage_mean"] = float(trained.mean()) if trained.size else math.nan
    out["charts/advantage_std"] = float(trained.std()) if trained.size else math.nan
    out["charts/advantage_abs_max"] = float(np.abs(trained).max()) if trained.size else math.nan
    if keep is not None:
        out["charts/dropped_transition_share"] = float(1.0 - keep.mean()) if keep.size else 0.0
    if algo == "gigpo":
        out["charts/anchor_step_share"] = anchor_share(steps)
    return out


# ppo.algo -> its iteration (the trainer looks one up; config.ALGORITHMS lists the names)
ITERATIONS: dict[str, Callable[..., Iteration]] = {
    "ppo": ppo_iteration,
    **{name: group_iteration for name in ESTIMATORS},
}
