"""Rollout collection: training success counts each env's first episode wherever it ends
(episodes that happen to end inside the buffer over-represent the short ones)."""

from __future__ import annotations

import numpy as np
import torch

from vlrl.config import load_config
from vlrl.training.agent import ActOutput
from vlrl.training.buffer import RolloutBuffer
from vlrl.training.env_batch import make_env_batch
from vlrl.training.episodes import EpisodeTracker
from vlrl.training.rollout import collect_rollout, cut_verification_budget


class ScriptedAgent:
    """Moves right when the expert says so with probability ``skill``, else the other way;
    counts the decisions it was asked for."""

    def __init__(self, skill: float) -> None:
        self.skill = skill
        self.rng = np.random.default_rng(0)
        self.decisions = 0

    def act(self, envs, observations, ids=None, temperature=None, need_logprob=True):
        experts = envs.expert_actions(ids)
        n = len(experts)
        self.decisions += n
        actions = [e if self.rng.random() < self.skill else 1 - e for e in experts]
        return ActOutput(actions, [None] * n, torch.zeros(n), torch.zeros(n), [False] * n)

    def values(self, envs, observations, ids=None):
        return torch.zeros(len(observations))

    def token_count(self, payload):
        return 1


def test_first_episodes_are_played_to_their_end_and_counted_once():
    num_envs = 16
    envs = make_env_batch("vlrl/NumberLine-v0", num_envs, {"image_size": 56})
    observations = envs.reset(list(range(num_envs)))
    agent = ScriptedAgent(skill=0.6)
    buffer = RolloutBuffer(1, num_envs)  # one step: almost no episode ends inside it
    tracker = EpisodeTracker(num_envs)
    stats = collect_rollout(agent, envs, observations, buffer, tracker, temperature=1.0)
    assert len(tracker.first) == num_envs
    assert stats.steps == num_envs  # the extra steps are not transitions
    assert agent.decisions > num_envs  # ... but were played
    # the first episodes' lengths are their whole lengths, not cut at the buffer
    assert max(e.length for e in tracker.first) > 1
    # success and return agree with the episode rules (+1 on reaching the target)
    for episode in tracker.first:
        assert episode.success == (episode.episode_return > 0)


def test_length_bias_is_gone():
    """A policy that succeeds in short episodes and fails in long ones: counting episodes
    that end inside a short buffer overstates success; the first-episode count does not."""
    num_envs = 64
    envs = make_env_batch("vlrl/NumberLine-v0", num_envs, {"image_size": 56})
    observations = envs.reset(list(range(100, 100 + num_envs)))
    tracker = EpisodeTracker(num_envs)
    collect_rollout(
        ScriptedAgent(skill=0.7), envs, observations, RolloutBuffer(3, num_envs), tracker, 1.0
    )
    biased = tracker.means()["episode_success"]
    unbiased = tracker.means(tracker.first)["episode_success"]
    assert len(tracker.first) == num_envs
    assert biased > unbiased


def _gp(*overrides: str):
    return load_config(None, ["env.id=vlrl/GeneralPoints-v0", "ppo.buffer_size=128", *overrides])


def test_cut_verification_budget_names_the_cut_and_the_fix():
    # 32 envs share 128 transitions: 4 answers per env and update, a hand may take 6.
    why = cut_verification_budget(_gp("env.num_envs=32", "env.kwargs={max_verify: 5}"))
    assert why is not None
    assert "gives each env 4 answers per update" in why and "the 6 a hand may take" in why
    assert "use at most 21 envs" in why
    # The env's own default budget (5) counts when the kwargs leave it out.
    assert cut_verification_budget(_gp("env.num_envs=32", "env.kwargs={}")) == why


def test_cut_verification_budget_is_quiet_when_the_budget_fits_or_does_not_apply():
    assert cut_verification_budget(_gp("env.num_envs=8", "env.kwargs={max_verify: 10}")) is None
    assert cut_verification_budget(_gp("env.num_envs=32", "env.kwargs={max_verify: 3}")) is None
    # Group methods play whole episodes; other games have no verifier.
    assert cut_verification_budget(_gp("env.num_envs=32", "ppo.algo=grpo")) is None
    assert cut_verification_budget(load_config(None, ["env.num_envs=32"])) is None
