"""Straightforward pure-Python gymnasium versions of the four card games.

The baseline of bench/cards.py (stepped inside gymnasium's SyncVectorEnv) and a second
implementation the tests compare the C++ engine against. Same rules as vlrl._core (see
vlrl/cards.py); randomness through ``self.np_random`` as gymnasium envs do, so streams
differ from the core's generator. ``load_state`` lets a test start an env from the
state the C++ engine dealt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cards_reference import reference_verify  # noqa: E402

POINTS_OPERATORS = {"EZPoints": ("+", "*", "="), "Points24": ("+", "-", "*", "/", "(", ")", "=")}


class NumberLineEnv(gym.Env):
    """Move the current number to the target with "+" / "-" (clamped)."""

    def __init__(self, n_max: int = 5) -> None:
        self.n_max = n_max
        self.action_names = ["+", "-"]
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(0, n_max, (2,), np.int64)
        self.target = 0
        self.current = 0
        self.elapsed = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.target, self.current], dtype=np.int64)

    def load_state(self, target: int, current: int) -> None:
        self.target, self.current, self.elapsed = target, current, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.target = int(self.np_random.integers(0, self.n_max + 1))
        others = [v for v in range(self.n_max + 1) if v != self.target]
        self.current = int(others[self.np_random.integers(0, len(others))])
        self.elapsed = 0
        return self._obs(), {}

    def step(self, action: int):
        self.elapsed += 1
        before = self.current
        if action == 0:
            self.current = min(self.current + 1, self.n_max)
        else:
            self.current = max(self.current - 1, 0)
        terminated = self.current == self.target
        if terminated:
            reward = 1.0
        elif abs(self.target - self.current) >= abs(self.target - before):
            reward = -1.0
        else:
            reward = 0.0
        truncated = not terminated and self.elapsed >= 2 * self.n_max
        return self._obs(), reward, terminated, truncated, {}


class PointsEnv(gym.Env):
    """EZPoints (2 cards, target 12) or Points24 (4 cards, target 24)."""

    def __init__(self, game: str = "Points24", face_rule: str = "10") -> None:
        self.game = game
        self.n_cards = 2 if game == "EZPoints" else 4
        self.goal = 12 if game == "EZPoints" else 24
        self.max_steps = 5 if game == "EZPoints" else 20
        self.face_rule = face_rule
        self.max_number = 13 if face_rule == "11-12-13" else 10
        self.action_names = [str(v) for v in range(1, self.max_number + 1)] + list(
            POINTS_OPERATORS[game]
        )
        self.action_space = gym.spaces.Discrete(len(self.action_names))
        self.observation_space = gym.spaces.Box(0, 13, (2 * self.n_cards,), np.int64)
        self.values: list[int] = []
        self.used: list[bool] = []
        self.tokens: list[str] = []
        self.elapsed = 0

    def _value(self, rank: int) -> int:
        return 10 if rank >= 10 and self.face_rule == "10" else rank + 1

    def _obs(self) -> np.ndarray:
        return np.array(self.values + [int(u) for u in self.used], dtype=np.int64)

    def load_state(self, values: list[int]) -> None:
        self.values = list(values)
        self.used = [False] * len(values)
        self.tokens = []
        self.elapsed = 0

    def formula(self) -> str:
        text = ""
        for k, token in enumerate(self.tokens):
            if token.isdigit() and k > 0 and self.tokens[k - 1].isdigit():
                text += " "
            text += token
        return text

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.game == "EZPoints":
            first = self._value(int(self.np_random.integers(1, 13)))
            choices = [
                v for v in {12 - first, 12 // first if 12 % first == 0 else 0} if 1 <= v <= 10
            ]
            self.values = [first, int(choices[self.np_random.integers(0, len(choices))])]
        else:
            ranks = self.np_random.integers(0, 13, size=self.n_cards)
            self.values = [self._value(int(r)) for r in ranks]
        self.used = [False] * self.n_cards
        self.tokens = []
        self.elapsed = 0
        return self._obs(), {}

    def step(self, action: int):
        self.elapsed += 1
        name = self.action_names[action]
        reward, terminated = 0.0, False
        if name.isdigit():
            slot = next(
                (k for k, v in enumerate(self.values) if v == int(name) and not self.used[k]), None
            )
            if slot is None:
                reward = -1.0
            else:
                self.used[slot] = True
                self.tokens.append(name)
        elif name == "=":
            outcome, _, _ = reference_verify(self.formula(), self.values, self.goal)
            reward = 10.0 if outcome == "correct" else -1.0
            terminated = True
        else:
            self.tokens.append(name)
        truncated = not terminated and self.elapsed >= self.max_steps
        if truncated:
            reward = -1.0
        return self._obs(), reward, terminated, truncated, {}


class BlackjackEnv(gym.Env):
    """Gymnasium Blackjack-v1 rules (sab=False); actions 0 stand, 1 hit."""

    def __init__(self, natural: bool = False) -> None:
        self.natural = natural
        self.action_names = ["stand", "hit"]
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(0, 32, (3,), np.int64)
        self.player: list[int] = []
        self.dealer: list[int] = []

    @staticmethod
    def hand_sum(hand: list[int]) -> int:
        total = sum(hand)
        return total + 10 if 1 in hand and total + 10 <= 21 else total

    def _draw(self) -> int:
        return min(int(self.np_random.integers(1, 14)), 10)

    def _obs(self) -> np.ndarray:
        usable = 1 in self.player and sum(self.player) + 10 <= 21
        return np.array([self.hand_sum(self.player), self.dealer[0], int(usable)], np.int64)

    def load_state(self, player: list[int], dealer: list[int]) -> None:
        self.player, self.dealer = list(player), list(dealer)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.dealer = [self._draw(), self._draw()]
        self.player = [self._draw(), self._draw()]
        return self._obs(), {}

    def step(self, action: int):
        if action == 1:
            self.player.append(self._draw())
            if self.hand_sum(self.player) > 21:
                return self._obs(), -1.0, True, False, {}
            return self._obs(), 0.0, False, False, {}
        while self.hand_sum(self.dealer) < 17:
            self.dealer.append(self._draw())
        player_score = self.hand_sum(self.player) if self.hand_sum(self.player) <= 21 else 0
        dealer_score = self.hand_sum(self.dealer) if self.hand_sum(self.dealer) <= 21 else 0
        reward = float((player_score > dealer_score) - (player_score < dealer_score))
        if self.natural and reward == 1.0 and sorted(self.player) == [1, 10]:
            reward = 1.5
        return self._obs(), reward, True, False, {}


def make_env(game: str, **kwargs: Any) -> gym.Env:
    """One pure-Python env by the engine's game name."""
    if game == "NumberLine":
        return NumberLineEnv(**kwargs)
    if game in ("EZPoints", "Points24"):
        return PointsEnv(game, **kwargs)
    if game == "Blackjack":
        return BlackjackEnv(**kwargs)
    raise ValueError(f"unknown game {game!r}")
