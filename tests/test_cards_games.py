"""Batched games: SPEC section 1 transitions, bounds, illegal actions, time limits, seeding."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from vlrl.cards import BatchedGames, solve, verify

_BENCH = Path(__file__).resolve().parents[1] / "bench" / "pure_python_cards.py"
_spec = importlib.util.spec_from_file_location("pure_python_cards", _BENCH)
assert _spec is not None and _spec.loader is not None
pure = importlib.util.module_from_spec(_spec)
sys.modules["pure_python_cards"] = pure
_spec.loader.exec_module(pure)


def _actions(rng: np.random.Generator, n: int, n_actions: int) -> np.ndarray:
    return rng.integers(0, n_actions, size=n).astype(np.int32)


def test_action_names() -> None:
    numbers = [str(v) for v in range(1, 11)]
    assert BatchedGames("NumberLine", 1, 0).action_names == ["+", "-"]
    assert BatchedGames("Blackjack", 1, 0).action_names == ["stand", "hit"]
    assert BatchedGames("EZPoints", 1, 0).action_names == numbers + ["+", "*", "="]
    assert BatchedGames("Points24", 1, 0).action_names == numbers + list("+-*/()=")
    thirteen = BatchedGames("Points24", 1, 0, face_rule="11-12-13").action_names
    assert thirteen == [str(v) for v in range(1, 14)] + list("+-*/()=")


# ---------------------------------------------------------------- NumberLine


def test_number_line_reset_distribution() -> None:
    games = BatchedGames("NumberLine", 4000, 11, n_max=5)
    target, current = games.target, games.current
    assert ((target >= 0) & (target <= 5) & (current >= 0) & (current <= 5)).all()
    assert (target != current).all()
    assert len(set(zip(target.tolist(), current.tolist(), strict=True))) == 30  # all pairs


@pytest.mark.parametrize("n_max", [1, 5, 9])
def test_number_line_transitions_follow_the_table(n_max: int) -> None:
    rng = np.random.default_rng(n_max)
    games = BatchedGames("NumberLine", 512, 3, n_max=n_max)
    for _ in range(2 * n_max + 2):
        x, y, done, elapsed = games.target, games.current, games.done, games.elapsed
        actions = _actions(rng, 512, 2)
        rewards, terminated, truncated = games.step(actions)
        moved = np.clip(np.where(actions == 0, y + 1, y - 1), 0, n_max)
        live = ~done
        expected_reward = np.where(
            moved == x, 1.0, np.where(np.abs(x - moved) >= np.abs(x - y), -1.0, 0.0)
        )
        assert (games.current[live] == moved[live]).all()
        assert (rewards[live] == expected_reward[live]).all()
        assert (terminated[live] == (moved == x)[live]).all()
        expect_trunc = (moved != x) & (elapsed + 1 >= 2 * n_max)
        assert (truncated[live] == expect_trunc[live]).all()
        # finished envs ignore actions and repeat their final flags
        assert (games.current[done] == y[done]).all() and (rewards[done] == 0).all()
        assert (terminated[done] | truncated[done]).all()
    assert games.done.all()  # every episode ends by T = 2 * n_max


def test_number_line_bounds_are_penalised() -> None:
    games = BatchedGames("NumberLine", 2000, 5, n_max=5)
    at_zero = np.flatnonzero(games.current == 0)
    at_top = np.flatnonzero(games.current == 5)
    actions = np.zeros(2000, np.int32)
    actions[at_zero] = 1  # "-" at 0
    actions[at_top] = 0  # "+" at n_max
    rewards, terminated, _ = games.step(actions)
    blocked = np.concatenate([at_zero, at_top])
    assert len(at_zero) > 0 and len(at_top) > 0
    assert (rewards[blocked] == -1).all() and not terminated[blocked].any()
    assert (games.current[at_zero] == 0).all() and (games.current[at_top] == 5).all()


def test_number_line_success_needs_positive_return() -> None:
    def walk(detour: bool) -> BatchedGames:
        games = BatchedGames("NumberLine", 1, 0, n_max=5)
        if detour:  # one step away (or blocked at a bound): -1
            away = 1 if games.target[0] > games.current[0] else 0
            assert games.step(np.array([away], np.int32))[0][0] == -1
        while not games.done[0]:
            toward = 0 if games.target[0] > games.current[0] else 1
            games.step(np.array([toward], np.int32))
        return games

    direct, detour = walk(False), walk(True)
    assert direct.episode_return[0] == 1 and direct.success[0]
    assert detour.episode_return[0] == 0 and not detour.success[0]
    assert detour.current[0] == detour.target[0]


# ---------------------------------------------------------------- points games


def _play(games: BatchedGames, index: int, names: list[str]) -> list[float]:
    """Step env ``index`` through action names; the other envs take "+"."""
    plus = games.action_names.index("+")
    rewards = []
    for name in names:
        actions = np.full(games.num_envs, plus, np.int32)
        actions[index] = games.action_names.index(name)
        r, _, _ = games.step(actions)
        rewards.append(float(r[index]))
    return rewards


def test_ez_points_hands_reach_twelve() -> None:
    games = BatchedGames("EZPoints", 3000, 1)
    v = games.values
    assert ((v[:, 0] + v[:, 1] == 12) | (v[:, 0] * v[:, 1] == 12)).all()
    assert (games.cards[:, 0] >= 1).all()  # first card 2..K
    assert games.solvable.all()
    assert len({tuple(row) for row in v.tolist()}) >= 10


def test_points_expert_formula_scores_ten() -> None:
    for game, kwargs in [
        ("EZPoints", {}),
        ("Points24", {}),
        ("Points24", {"face_rule": "11-12-13"}),
    ]:
        games = BatchedGames(game, 64, 2, **kwargs)
        target = games.points_target
        for i in np.flatnonzero(games.solvable)[:10]:
            formula = solve(games.values[i].tolist(), target)
            assert formula is not None
            names = re.findall(r"\d+|[-+*/()]", formula) + ["="]
            if len(names) > (5 if game == "EZPoints" else 20):
                continue
            fresh = BatchedGames(game, 64, 2, **kwargs)
            rewards = _play(fresh, int(i), names)
            assert rewards[-1] == 10.0 and sum(rewards) == 10.0
            assert fresh.success[i] and fresh.done[i]
        assert (games.target == target).all() and games.target.shape == (64,)
        solvable = np.array([solve(v, target) is not None for v in games.values.tolist()])
        assert (games.solvable == solvable).all()


def test_points_illegal_actions_leave_state_unchanged() -> None:
    games = BatchedGames("Points24", 256, 4)
    rng = np.random.default_rng(0)
    n_numbers = 10
    for _ in range(6):
        mask = games.legal_mask()
        values, used = games.values, games.used
        for i in range(4):  # mask row = numbers on unused cards, operators always
            expected = np.zeros(17, bool)
            expected[values[i][~used[i]] - 1] = True
            expected[n_numbers:] = True
            assert (mask[i] == expected).all()
        before_used = games.used
        before_formula = [games.formula(i) for i in range(256)]
        illegal = ~mask[np.arange(256), :n_numbers]
        picks = np.array(
            [rng.choice(np.flatnonzero(row)) if row.any() else 10 for row in illegal], np.int32
        )
        done_before = games.done
        rewards, terminated, truncated = games.step(picks)
        hit = (picks < n_numbers) & ~done_before
        assert (rewards[hit] == -1).all()
        assert (games.used[hit] == before_used[hit]).all()
        assert all(games.formula(i) == before_formula[i] for i in np.flatnonzero(hit))
        assert not terminated[hit].any()


def test_points_equals_with_unused_cards_and_joined_numbers() -> None:
    games = BatchedGames("Points24", 16, 9)
    values = games.values
    i = 0
    a, b = str(values[i][0]), str(values[i][1])
    rewards = _play(games, i, [a, b])
    assert rewards == [0.0, 0.0]
    assert games.formula(i) == f"{a} {b}"  # two numbers never join
    assert verify(games.formula(i), values[i].tolist(), 24).outcome == "syntax_error"
    assert _play(games, i, ["="]) == [-1.0]
    assert games.done[i] and not games.success[i]
    fresh = BatchedGames("Points24", 16, 9)
    assert _play(fresh, 0, [a, "="]) == [0.0, -1.0]  # unused cards: -1


@pytest.mark.parametrize(("game", "limit"), [("EZPoints", 5), ("Points24", 20)])
def test_points_time_limit(game: str, limit: int) -> None:
    games = BatchedGames(game, 8, 0)
    plus = games.action_names.index("+")
    for t in range(1, limit + 1):
        rewards, terminated, truncated = games.step(np.full(8, plus, np.int32))
        assert not terminated.any()
        assert (truncated == (t == limit)).all()
        assert (rewards == (-1.0 if t == limit else 0.0)).all()
    assert (games.elapsed == limit).all() and not games.success.any()
    # an illegal action on the last step still gives -1, not -2
    games = BatchedGames(game, 1, 0)
    missing = next(v for v in range(1, 11) if v not in games.values[0])
    _play(games, 0, ["+"] * (limit - 1))
    assert _play(games, 0, [str(missing)]) == [-1.0]
    assert games.episode_return[0] == -1.0


@pytest.mark.parametrize("game", ["EZPoints", "Points24", "NumberLine"])
def test_matches_the_pure_python_implementation(game: str) -> None:
    """Deterministic games step for step against bench/pure_python_cards.py."""
    rng = np.random.default_rng(1)
    games = BatchedGames(game, 64, 21)
    refs = []
    for i in range(64):
        ref = pure.make_env(game)
        ref.reset(seed=0)
        if game == "NumberLine":
            ref.load_state(int(games.target[i]), int(games.current[i]))
        else:
            ref.load_state(games.values[i].tolist())
        refs.append(ref)
    finished = np.zeros(64, bool)
    # bias toward numbers so that formulas get built
    weights = np.ones(len(games.action_names))
    weights[-1] = 0.3
    weights /= weights.sum()
    for _ in range(22):
        actions = rng.choice(len(games.action_names), size=64, p=weights).astype(np.int32)
        rewards, terminated, truncated = games.step(actions)
        for i, ref in enumerate(refs):
            if finished[i]:
                continue
            _, r, te, tr, _ = ref.step(int(actions[i]))
            assert (r, te, tr) == (rewards[i], terminated[i], truncated[i]), (game, i)
            if game == "NumberLine":
                assert ref.current == games.current[i]
            else:
                assert ref.formula() == games.formula(i)
            finished[i] = te or tr
    assert finished.all()


# ---------------------------------------------------------------- Blackjack


def _blackjack_returns_ours(n: int, natural: bool) -> np.ndarray:
    games = BatchedGames("Blackjack", n, 17, natural=natural)
    while not games.done.all():
        actions = (games.player_sum < 17).astype(np.int32)  # hit below 17
        games.step(actions)
    return games.episode_return


def _blackjack_returns_gymnasium(n: int, natural: bool) -> np.ndarray:
    env = gym.make("Blackjack-v1", natural=natural, sab=False)
    returns = np.zeros(n)
    obs, _ = env.reset(seed=5)
    for k in range(n):
        done = False
        while not done:
            obs, r, te, tr, _ = env.step(int(obs[0] < 17))
            returns[k] += r
            done = te or tr
        obs, _ = env.reset()
    return returns


@pytest.mark.parametrize("natural", [False, True])
def test_blackjack_matches_gymnasium_statistically(natural: bool) -> None:
    n = 20000
    ours = _blackjack_returns_ours(n, natural)
    theirs = _blackjack_returns_gymnasium(n, natural)
    se = np.sqrt(ours.var() / n + theirs.var() / n)
    assert abs(ours.mean() - theirs.mean()) < 4 * se, (ours.mean(), theirs.mean(), se)
    assert set(np.unique(ours)) <= ({-1.0, 0.0, 1.0, 1.5} if natural else {-1.0, 0.0, 1.0})
    if natural:
        assert (ours == 1.5).any()


def test_blackjack_step_rules() -> None:
    games = BatchedGames("Blackjack", 4000, 8)
    assert (games.n_player_cards == 2).all() and (games.n_dealer_cards == 2).all()
    dealer_values = np.minimum(games.dealer_cards[:, 0] + 1, 10)
    assert (games.dealer_showing == dealer_values).all()
    assert (games.player_cards[:, 2:] == -1).all()
    ace = (games.player_cards[:, :2] == 0).any(axis=1)
    raw = np.minimum(games.player_cards[:, :2] + 1, 10).sum(axis=1)
    assert (games.usable_ace == (ace & (raw + 10 <= 21))).all()
    assert (games.player_sum == np.where(games.usable_ace, raw + 10, raw)).all()

    actions = (np.arange(4000) % 2).astype(np.int32)  # even envs stand, odd hit
    rewards, terminated, truncated = games.step(actions)
    hit = actions == 1
    bust = games.player_sum > 21
    assert (rewards[hit & bust] == -1).all() and terminated[hit & bust].all()
    assert (rewards[hit & ~bust] == 0).all() and not terminated[hit & ~bust].any()
    assert (games.n_player_cards[hit] == 3).all()
    stand = ~hit
    assert terminated[stand].all() and not truncated.any()
    assert (games.dealer_sum[stand] >= 17).all()
    player_score = np.where(games.player_sum > 21, 0, games.player_sum)
    dealer_score = np.where(games.dealer_sum > 21, 0, games.dealer_sum)
    expected = np.sign(player_score - dealer_score).astype(np.float32)
    assert (rewards[stand] == expected[stand]).all()
    assert (games.success == (rewards > 0)).all()


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("game", ["NumberLine", "EZPoints", "Points24", "Blackjack"])
def test_seeded_reproducibility(game: str) -> None:
    rng = np.random.default_rng(3)
    one, two = BatchedGames(game, 32, 99), BatchedGames(game, 32, 99)
    for _ in range(30):
        actions = _actions(rng, 32, len(one.action_names))
        a, b = one.step(actions), two.step(actions)
        for x, y in zip(a, b, strict=True):
            assert (x == y).all()
        if one.done.all():
            one.reset()
            two.reset()
    # env i of seed s is env 0 of seed s + i
    wide, single = BatchedGames(game, 8, 40), BatchedGames(game, 1, 45)
    state = "target" if game == "NumberLine" else "player_cards" if game == "Blackjack" else "cards"
    assert (getattr(wide, state)[5] == getattr(single, state)[0]).all()
    # reset(seeds) reseeds; reset() continues the streams
    wide.reset(np.full(8, 45, np.uint64))
    assert (getattr(wide, state) == getattr(single, state)[0]).all()
    before = getattr(wide, state)
    changed = False
    for _ in range(5):
        wide.reset()
        changed |= bool((getattr(wide, state) != before).any())
    assert changed


def test_auto_reset_modes() -> None:
    # next_step: the step after the end resets and ignores the action
    games = BatchedGames("Blackjack", 4, 0, auto_reset=True)
    r, te, _ = games.step(np.zeros(4, np.int32))  # stand: every episode ends
    assert te.all() and games.done.all()
    r, te, tr = games.step(np.zeros(4, np.int32))
    assert (r == 0).all() and not te.any() and not tr.any()
    assert (games.n_player_cards == 2).all() and (games.elapsed == 0).all()
    # same_step: the ending step already shows the new episode, success kept
    games = BatchedGames("Blackjack", 256, 0, auto_reset="same_step")
    r, te, _ = games.step(np.zeros(256, np.int32))
    assert te.all() and not games.done.any() and (games.elapsed == 0).all()
    assert (games.success == (r > 0)).all() and games.success.any()
    # none: a finished env ignores actions and repeats its flags
    games = BatchedGames("Blackjack", 4, 0)
    games.step(np.zeros(4, np.int32))
    cards = games.player_cards
    r, te, _ = games.step(np.ones(4, np.int32))
    assert (r == 0).all() and te.all() and (games.player_cards == cards).all()


def test_bad_arguments_are_named() -> None:
    games = BatchedGames("Points24", 4, 0)
    formulas = [games.formula(i) for i in range(4)]
    elapsed = games.elapsed
    with pytest.raises(ValueError, match="action 17 of env 2"):
        games.step(np.array([0, 0, 17, 0], np.int32))
    with pytest.raises(ValueError, match="action -1"):
        games.step(np.array([-1, 0, 0, 0], np.int32))
    assert (games.elapsed == elapsed).all()  # nothing moved
    assert [games.formula(i) for i in range(4)] == formulas
    with pytest.raises(ValueError, match="length 4"):
        games.step(np.zeros(3, np.int32))
    with pytest.raises(AttributeError, match="Blackjack"):
        _ = games.player_sum
    with pytest.raises(AttributeError, match="NumberLine"):
        _ = games.current
    with pytest.raises(AttributeError, match="points games"):
        _ = BatchedGames("Blackjack", 1, 0).target
    with pytest.raises(ValueError, match="game must be"):
        BatchedGames("Poker", 1, 0)
    with pytest.raises(ValueError, match="face_rule"):
        BatchedGames("EZPoints", 1, 0, face_rule="11-12-13")
    with pytest.raises(ValueError, match="n_max"):
        BatchedGames("NumberLine", 1, 0, n_max=0)
    with pytest.raises(ValueError, match="num_envs"):
        BatchedGames("NumberLine", 0, 0)
    with pytest.raises(ValueError, match="auto_reset"):
        BatchedGames("NumberLine", 1, 0, auto_reset="sometimes")
    # int64 action arrays are accepted (converted)
    games.step(np.zeros(4, np.int64))


def test_long_core_calls_release_the_gil() -> None:
    """The main thread runs while a worker thread is inside solve() and step().

    The worker signals, then enters long core calls. The main thread wakes on the
    signal only once it gets the GIL: at once if the core released it, only when the
    calls are over if the core held it.
    """
    import threading
    import time

    games = BatchedGames("Points24", 200_000, 0, auto_reset=True)
    actions = np.zeros(200_000, np.int32)
    started = threading.Event()
    times: dict[str, float] = {}

    def work() -> None:
        started.set()
        times["entered"] = time.perf_counter()
        solve([1, 2, 3, 4, 5, 6], 10**9 + 7)  # unsolvable 6-card search: a long call
        for _ in range(3):
            games.step(actions)
        times["finished"] = time.perf_counter()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    woke = time.perf_counter()
    worker.join()
    busy = times["finished"] - times["entered"]
    assert woke - times["entered"] < 0.5 * busy, (woke - times["entered"], busy)
