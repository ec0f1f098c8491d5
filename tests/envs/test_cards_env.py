"""The gym_cards envs: API checks, seeding, the SPEC section 1 transitions, experts, prompts."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import vlrl.envs  # noqa: F401
from gymnasium.utils.env_checker import check_env
from vlrl.envs import parse_action

VARIANTS = [
    ("vlrl/NumberLine-v0", {}),
    ("vlrl/NumberLine-v0", {"n_max": 12, "image_size": 112}),
    ("vlrl/EZPoints-v0", {}),
    ("vlrl/Points24-v0", {}),
    ("vlrl/Points24-v0", {"face_rule": "11-12-13", "sampling": "at_least_one_face"}),
    ("vlrl/Points24-v0", {"sampling": "deck", "suits": "red"}),
    ("vlrl/Points24-v0", {"suits": "black", "image_size": 64}),
    ("vlrl/Blackjack-v0", {}),
    ("vlrl/Blackjack-v0", {"natural": True}),
]
IDS = [f"{env_id.split('/')[1]}{kwargs}" for env_id, kwargs in VARIANTS]


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS, ids=IDS)
def test_check_env(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    observation, info = env.reset(seed=0)
    size = kwargs.get("image_size", 336)
    assert observation["image"].shape == (size, size, 3)
    assert env.observation_space.contains(observation)
    assert env.unwrapped.answer_key == "action" and not env.unwrapped.takes_text_action
    assert list(info["legal_actions"]) == list(np.nonzero(env.unwrapped.legal_mask())[0])


def _rollout(env, seed: int, steps: int, action_seed: int):
    rng = np.random.default_rng(action_seed)
    observation, info = env.reset(seed=seed)
    trace = [(observation["image"].tobytes(), observation["text"], json.dumps(info, default=str))]
    for _ in range(steps):
        observation, reward, terminated, truncated, info = env.step(
            int(rng.integers(env.action_space.n))
        )
        trace.append((observation["image"].tobytes(), reward, terminated, truncated, str(info)))
        if terminated or truncated:
            observation, info = env.reset()
            trace.append((observation["image"].tobytes(), json.dumps(info, default=str)))
    return trace


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS[::2], ids=IDS[::2])
def test_seeds_reproduce_episodes_exactly(env_id, kwargs):
    first = _rollout(gym.make(env_id, **kwargs), seed=11, steps=40, action_seed=5)
    second = _rollout(gym.make(env_id, **kwargs), seed=11, steps=40, action_seed=5)
    other = _rollout(gym.make(env_id, **kwargs), seed=12, steps=40, action_seed=5)
    assert first == second
    assert first != other


# ------------------------------------------------------------------ NumberLine


def test_numberline_transitions():
    env = gym.make("vlrl/NumberLine-v0", n_max=5)
    plus, minus = env.unwrapped.action_names.index("+"), env.unwrapped.action_names.index("-")
    for seed in range(60):
        _, info = env.reset(seed=seed)
        target, current = info["target"], info["current"]
        assert target != current and 0 <= target <= 5 and 0 <= current <= 5
        steps = 0
        total = 0.0
        while True:
            # Alternate a wrong move at the bound with the right move.
            action = (
                minus
                if (steps % 3 == 0 and current == 0)
                else (plus if current < target else minus)
            )
            _, reward, terminated, truncated, info = env.step(action)
            steps += 1
            total += reward
            expected = min(5, current + 1) if action == plus else max(0, current - 1)
            assert info["current"] == expected
            if expected == target:
                # Success is the dissertation's "return > 0", not reaching the target.
                assert reward == 1 and terminated and info["success"] == (total > 0)
            elif abs(target - expected) >= abs(target - current):
                assert reward == -1
            else:
                assert reward == 0
            current = expected
            if terminated or truncated:
                break
        assert steps <= 10


def test_numberline_truncates_after_two_n_max_steps():
    env = gym.make("vlrl/NumberLine-v0", n_max=5)
    _, info = env.reset(seed=3)
    away = "-" if info["current"] < info["target"] else "+"
    action = env.unwrapped.action_names.index(away)
    for step in range(1, 11):
        _, reward, terminated, truncated, info = env.step(action)
        assert reward == -1 and not terminated
        assert truncated == (step == 10)
    assert info["success"] is False


# --------------------------------------------------------------------- points


def _index(env, name: str) -> int:
    return env.unwrapped.action_names.index(name)


def test_points_illegal_number_leaves_state_unchanged():
    env = gym.make("vlrl/Points24-v0")
    observation, info = env.reset(seed=4)
    missing = next(str(v) for v in range(1, 11) if v not in info["values"])
    after, reward, terminated, truncated, info2 = env.step(_index(env, missing))
    assert reward == -1 and not terminated and not truncated
    assert info2["formula"] == info["formula"] == ""
    assert np.array_equal(after["image"], observation["image"])
    assert _index(env, missing) not in info2["legal_actions"]


def test_points_equals_with_unused_cards_is_minus_one():
    env = gym.make("vlrl/EZPoints-v0")
    _, info = env.reset(seed=2)
    env.step(_index(env, str(info["values"][0])))
    _, reward, terminated, _, info = env.step(_index(env, "="))
    assert reward == -1 and terminated and info["success"] is False


def test_points_time_out_penalty():
    env = gym.make("vlrl/EZPoints-v0")
    env.reset(seed=5)
    rewards = [env.step(_index(env, "+"))[1:4] for _ in range(5)]
    assert [r[0] for r in rewards] == [0, 0, 0, 0, -1]
    assert rewards[-1][2] is True and rewards[-1][1] is False  # truncated, not terminated


def test_points_formula_is_shown_in_text_and_prompt():
    env = gym.make("vlrl/Points24-v0")
    _, info = env.reset(seed=9)
    observation, *_ = env.step(_index(env, "("))
    observation, _, _, _, info = env.step(_index(env, str(info["values"][0])))
    assert observation["text"] == info["formula"] == f"({info['values'][0]}"
    assert f"'{info['formula']}'" in env.unwrapped.prompt(cot=True)
    assert f"'{info['formula']}'" in env.unwrapped.prompt(cot=False)


def test_ood_points_variant_deals_face_cards_worth_more_than_ten():
    env = gym.make("vlrl/Points24-v0", face_rule="11-12-13", sampling="at_least_one_face")
    assert env.unwrapped.action_names[:13] == [str(v) for v in range(1, 14)]
    for seed in range(30):
        _, info = env.reset(seed=seed)
        faces = [v for c, v in zip(info["cards"], info["values"], strict=True) if c in "JQK"]
        assert faces and all(v in (11, 12, 13) for v in faces)


# ----------------------------------------------------------------- experts


@pytest.mark.parametrize(
    ("env_id", "kwargs", "episodes"),
    [
        ("vlrl/NumberLine-v0", {}, 40),
        ("vlrl/EZPoints-v0", {}, 40),
        ("vlrl/Points24-v0", {}, 40),
        ("vlrl/Points24-v0", {"face_rule": "11-12-13"}, 20),
    ],
)
def test_expert_response_through_f_plays_the_expert_move(env_id, kwargs, episodes):
    """The expert text parsed by f gives the expert action, and it wins when winnable."""
    env = gym.make(env_id, **kwargs)
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        solvable = info.get("solvable", True)
        total = 0.0
        while True:
            cot = env.unwrapped.expert_response(cot=True)
            plain = env.unwrapped.expert_response(cot=False)
            action, fallback = parse_action(env, cot)
            assert not fallback and action == env.unwrapped.expert_action()
            assert parse_action(env, plain) == (action, False)
            assert set(json.loads(plain)) == {"action"}
            _, reward, terminated, truncated, info = env.step(action)
            total += reward
            if terminated or truncated:
                break
        assert info["success"] == solvable, (seed, info)
        assert total > 0 if solvable else total == -1


def test_numberline_cot_expert_reads_out_the_numbers():
    env = gym.make("vlrl/NumberLine-v0")
    _, info = env.reset(seed=1)
    answer = json.loads(env.unwrapped.expert_response(cot=True))
    assert list(answer) == ["current number", "target number", "thoughts", "action"]
    assert answer["current number"] == str(info["current"])
    assert answer["target number"] == str(info["target"])


def test_expert_recovers_from_a_formula_off_the_solver_path():
    env = gym.make("vlrl/Points24-v0")
    for seed in range(200):
        _, info = env.reset(seed=seed)
        if info["solvable"]:
            break
    # Start with the last card: usually not the solver's first token.
    env.step(_index(env, str(info["values"][-1])))
    while True:
        _, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
        if terminated or truncated:
            break
    assert reward == 10, "the expert should finish a solvable hand from a card-first prefix"


def test_blackjack_expert_follows_basic_strategy():
    from vlrl.envs.cards_env import basic_strategy

    assert basic_strategy(16, 10, False) == "hit"
    assert basic_strategy(16, 6, False) == "stand"
    assert basic_strategy(12, 3, False) == "hit"
    assert basic_strategy(12, 4, False) == "stand"
    assert basic_strategy(18, 9, True) == "hit"
    assert basic_strategy(18, 1, True) == "hit"
    assert basic_strategy(18, 7, True) == "stand"
    assert basic_strategy(11, 1, False) == "hit"
    env = gym.make("vlrl/Blackjack-v0")
    _, info = env.reset(seed=0)
    answer = json.loads(env.unwrapped.expert_response(cot=True))
    assert str(info["player_sum"]) in answer["thoughts"]
    assert answer["action"] == basic_strategy(
        info["player_sum"], info["dealer_showing"], info["usable_ace"]
    )


def test_blackjack_hole_card_is_revealed_at_the_end():
    env = gym.make("vlrl/Blackjack-v0")
    observation, _ = env.reset(seed=1)
    stand = _index(env, "stand")
    final, _, terminated, _, _ = env.step(stand)
    assert terminated
    # The dealer's row changes (face-down card turned over); the player's row does not.
    half = observation["image"].shape[0] // 2
    assert not np.array_equal(final["image"][:half], observation["image"][:half])
    assert np.array_equal(final["image"][half + 20 :], observation["image"][half + 20 :])


# ------------------------------------------------------------------ prompts


@pytest.mark.parametrize(
    "env_id", ["vlrl/NumberLine-v0", "vlrl/EZPoints-v0", "vlrl/Points24-v0", "vlrl/Blackjack-v0"]
)
def test_prompts_list_the_actions_and_the_format(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    cot = env.unwrapped.prompt(cot=True)
    plain = env.unwrapped.prompt(cot=False)
    for name in env.unwrapped.action_names:
        assert f"'{name}'" in cot and f"'{name}'" in plain
    assert '"thoughts"' in cot and '"thoughts"' not in plain
    assert '"action"' in cot and '"action"' in plain
