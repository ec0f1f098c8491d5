"""GeneralPoints: reward classes, verifier messages, revision history, variants."""

from __future__ import annotations

import json
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
import vlrl.envs  # noqa: F401
from gymnasium.utils.env_checker import check_env
from vlrl.envs import prompts
from vlrl.envs.general_points import GeneralPointsEnv

from vlrl import cards

VARIANTS = [
    {},
    {"vision": False},
    {"face_rule": "11-12-13", "sampling": "at_least_one_face"},
    {"suits": "red"},
    {"suits": "black", "sampling": "with_replacement", "image_size": 96},
    {"target": 10, "max_verify": 2},
    {"num_cards": 3, "target": 12, "vision": False, "sampling": "at_least_one_face"},
    {"num_cards": 2, "target": 12},
    {"num_cards": 6, "target": 24, "image_size": 96},
    {"face_rule": "7-2-12", "num_cards": 3, "target": 12, "vision": False},
    {"face_rule": "random", "num_cards": 3, "target": 12, "sampling": "at_least_one_face"},
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_check_env(kwargs):
    env = gym.make("vlrl/GeneralPoints-v0", **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    base = env.unwrapped
    assert base.takes_text_action and base.answer_key == "formula" and base.action_names == []


def _answer(cards_seen, numbers, formula) -> str:
    return json.dumps({"cards": list(cards_seen), "number": list(numbers), "formula": formula})


def _env(**kwargs) -> tuple[GeneralPointsEnv, dict]:
    env = GeneralPointsEnv(**kwargs)
    _, info = env.reset(seed=21)
    return env, info


def _wrong_value_formula(values: list[int], target: int) -> str:
    for op in "+*-":
        formula = op.join(str(v) for v in values)
        if cards.verify(formula, values, target).outcome == "wrong_value":
            return formula
    raise AssertionError("no wrong-value formula found")


@pytest.mark.parametrize("vision", [True, False])
def test_reward_for_every_outcome_class(vision):
    env, info = _env(vision=vision)
    hand, values = info["cards"], info["values"]
    bad_value = _wrong_value_formula(values, 24)
    cases = [
        (bad_value, -1.0, "wrong_value", "does not equal 24"),
        ("99+" + "+".join(str(v) for v in values[1:]), -2.0, "unknown_number", "not on the cards"),
        ("+".join(str(v) for v in values[:3]), -2.0, "card_count", "exactly once"),
        ("+".join(str(v) for v in [*values, values[0]]), -2.0, "card_count", "more than once"),
        ("(" + str(values[0]) + "+", -3.0, "syntax_error", "not a valid"),
        ("1/0", -3.0, "division_by_zero", "divides by zero"),
    ]
    for formula, reward, outcome, phrase in cases[:4]:
        _, r, terminated, truncated, step_info = env.step(_answer(hand, values, formula))
        assert (r, step_info["outcome"]) == (reward, outcome), formula
        assert not terminated and not truncated
        assert step_info["verifier_message"].startswith("You failed this trial because")
        assert phrase in step_info["verifier_message"]
    env, info = _env(vision=vision)
    for formula, reward, outcome, phrase in cases[4:]:
        _, r, _, _, step_info = env.step(_answer(hand, values, formula))
        assert (r, step_info["outcome"]) == (reward, outcome)
        assert phrase in step_info["verifier_message"]
    _, r, _, _, step_info = env.step("I cannot solve this.")
    assert (r, step_info["outcome"]) == ((-1.5, "wrong_cards") if vision else (-3.0, "no_formula"))
    assert step_info["used_fallback"] is True
    _, r, terminated, truncated, step_info = env.step(env.expert_response(cot=True))
    assert (r, terminated, truncated, step_info["success"]) == (5.0, True, False, True)
    assert step_info["turn"] == 4 and step_info["outcome"] == "correct"


def test_wrong_recognition_is_penalised_only_with_vision_and_not_scored():
    for vision, expected in ((True, (-1.5, "wrong_cards")), (False, (5.0, "correct"))):
        env, info = _env(vision=vision)
        wrong_cards = ["A", "A", "A", "A"] if info["cards"] != ["A"] * 4 else ["2"] * 4
        answer = json.loads(env.expert_response(cot=False))
        answer["cards"] = wrong_cards
        _, r, terminated, _, step_info = env.step(json.dumps(answer))
        assert (r, step_info["outcome"]) == expected
        assert step_info["recognition_correct"] is False
        assert terminated == (not vision)


def test_recognised_cards_may_come_in_any_order_and_spelling():
    env, info = _env()
    answer = json.loads(env.expert_response(cot=False))
    spelled = {"A": "ace", "J": "jack", "Q": "queen", "K": "king"}
    answer["cards"] = [spelled.get(c, c) for c in reversed(info["cards"])]
    _, r, *_ = env.step(json.dumps(answer))
    assert r == 5.0


def test_sixth_answer_times_out_unscored():
    env, info = _env()
    for turn in range(1, 6):
        _, r, terminated, truncated, step_info = env.step("no formula here")
        assert step_info["turn"] == turn and not (terminated or truncated)
    _, r, terminated, truncated, step_info = env.step(env.expert_response())
    assert (r, terminated, truncated) == (-1.0, False, True)
    assert step_info["outcome"] == "timeout" and step_info["success"] is False
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again")


def test_max_verify_is_configurable():
    env, _ = _env(max_verify=1)
    env.step("x")
    _, r, _, truncated, _ = env.step("x")
    assert (r, truncated) == (-1.0, True)


def test_prompt_is_system_prompt_plus_history():
    env, info = _env(vision=False)
    system = env.prompt(cot=True)
    assert "Cards: [" + ", ".join(f"'{c}'" for c in info["cards"]) + "]" in system
    assert '"thoughts"' in system and '"thoughts"' not in env.prompt(cot=False)
    first, second = "first try {formula: 1+}", '{"formula": "1/0"}'
    m1 = env.step(first)[4]["verifier_message"]
    m2 = env.step(second)[4]["verifier_message"]
    prompt = env.prompt(cot=True)
    assert prompt.startswith(system)
    tail = prompt[len(system) :]
    positions = [tail.index(part) for part in (first, m1, second, m2)]
    assert positions == sorted(positions)
    assert env.prompt(cot=False).endswith(m2)
    env.reset(seed=5)
    assert first not in env.prompt()


def test_vl_prompt_does_not_leak_the_cards():
    env, info = _env(vision=True)
    assert "Cards: shown in the image" in env.prompt()
    assert (
        "'" + info["cards"][0] + "'," not in env.prompt().split("[Input]")[1].split("[Output]")[0]
    )


def test_expert_response_is_correct_for_every_variant():
    for kwargs in VARIANTS:
        env = GeneralPointsEnv(**kwargs)
        for seed in range(10):
            _, info = env.reset(seed=seed)
            assert info["solvable"] is True
            for cot in (True, False):
                answer = json.loads(env.expert_response(cot=cot))
                assert ("thoughts" in answer) == cot
                assert answer["number"] == info["values"]
            _, r, terminated, _, _ = env.step(env.expert_response(cot=seed % 2 == 0))
            assert (r, terminated) == (5.0, True)


def test_ood_rule_variant_hands():
    env = GeneralPointsEnv(face_rule="11-12-13", sampling="at_least_one_face")
    for seed in range(100):
        _, info = env.reset(seed=seed)
        faces = [(c, v) for c, v in zip(info["cards"], info["values"], strict=True) if c in "JQK"]
        assert faces, info
        assert all(v == {"J": 11, "Q": 12, "K": 13}[c] for c, v in faces)
        assert cards.solve(info["values"], 24) is not None
    assert "11, 12 and 13" in env.prompt()


def test_general_face_rule_counts_faces_as_its_values_and_says_so():
    env = GeneralPointsEnv(face_rule="7-2-12", num_cards=3, target=12, vision=False)
    rule = {"J": 7, "Q": 2, "K": 12}
    seen_faces = set()
    for seed in range(60):
        _, info = env.reset(seed=seed)
        for card, value in zip(info["cards"], info["values"], strict=True):
            assert value == rule.get(card, cards.RANKS.index(card) + 1)
            seen_faces.update({card} & set(rule))
        assert info["face_rule"] == "7-2-12" and cards.solve(info["values"], 12) is not None
    assert seen_faces == set(rule)
    assert "'J', 'Q' and 'K' count as 7, 2 and 12" in env.prompt()


def test_random_face_rule_draws_a_rule_per_episode_paired_by_seed():
    env = GeneralPointsEnv(face_rule="random", num_cards=3, target=12, vision=False)
    twin = GeneralPointsEnv(face_rule="random", num_cards=3, target=12, vision=False)
    rules = set()
    for seed in range(40):
        _, info = env.reset(seed=seed)
        _, twin_info = twin.reset(seed=seed)
        assert (info["face_rule"], info["cards"]) == (twin_info["face_rule"], twin_info["cards"])
        values = cards.face_values(info["face_rule"])
        assert all(1 <= v <= 13 for v in values)
        assert info["values"] == [cards.card_value(c, info["face_rule"]) for c in info["cards"]]
        assert prompts.face_rule_note(info["face_rule"]) in env.prompt()
        rules.add(info["face_rule"])
        _, reward, terminated, _, _ = env.step(env.expert_response(cot=False))
        assert (reward, terminated) == (5.0, True)
    assert len(rules) > 30  # 13**3 rules: forty episodes almost never repeat one


def test_named_face_rules_keep_their_prompt_text():
    assert prompts.face_rule_note("10") == "'J', 'Q' and 'K' each count as 10"
    assert prompts.face_rule_note("11-12-13") == "'J', 'Q' and 'K' count as 11, 12 and 13"
    assert prompts.face_rule_note("5-5-5") == "'J', 'Q' and 'K' each count as 5"


def test_deck_sampling_never_repeats_a_card():
    env = GeneralPointsEnv()
    for seed in range(100):
        env.reset(seed=seed)
        assert len(set(zip(env.cards, env.card_suits, strict=True))) == 4


@pytest.mark.parametrize(
    ("suits", "allowed"), [("red", {"hearts", "diamonds"}), ("black", {"spades", "clubs"})]
)
def test_visual_variant_suits_and_pixels(suits, allowed):
    env = GeneralPointsEnv(suits=suits)
    seen = Counter()
    for seed in range(40):
        observation, _ = env.reset(seed=seed)
        seen.update(env.card_suits)
        image = observation["image"].astype(int)
        red_ink = ((image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)).sum()
        black_ink = (image.max(axis=2) < 40).sum()
        if suits == "red":
            assert red_ink > 1000 and black_ink == 0
        else:
            assert red_ink == 0 and black_ink > 1000
    assert set(seen) == allowed


def test_text_only_variant_carries_a_blank_image_and_the_cards_as_text():
    env = GeneralPointsEnv(vision=False)
    observation, info = env.reset(seed=0)
    assert observation["image"].shape == (336, 336, 3) and observation["image"].max() == 0
    assert observation["text"] == "Cards: [" + ", ".join(f"'{c}'" for c in info["cards"]) + "]"


def test_hostile_answers_never_crash_the_env():
    env = GeneralPointsEnv(max_verify=100)
    env.reset(seed=0)
    hostile = [
        "",
        "{" * 100_000,
        '{"formula": "' + "(" * 5000 + "1" + ")" * 5000 + '"}',
        '{"formula": "' + "9" * 400 + '"}',
        "\ud800\U0001f600 formula: \u202e 1+2",
        '{"cards": "A, 2, 3, 4", "number": "one", "formula": null}',
        '{"formula": 24}',
        b"bytes answer",
    ]
    for text in hostile:
        _, reward, _, _, info = env.step(text)
        assert reward in (-3.0, -2.0, -1.5, -1.0)
        assert isinstance(info["verifier_message"], str)
    assert np.isfinite(reward)


@pytest.mark.parametrize("num_cards", [2, 3, 5, 6])
@pytest.mark.parametrize("face_rule", ["10", "11-12-13"])
def test_num_cards_deals_solvable_hands_of_that_size(num_cards, face_rule):
    env = GeneralPointsEnv(num_cards=num_cards, target=12, face_rule=face_rule, vision=False)
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        assert len(info["cards"]) == len(info["values"]) == num_cards
        assert obs["text"].count("'") == 2 * num_cards
        expert = json.loads(env.expert_response(cot=False))
        assert len(expert["number"]) == num_cards
        _, reward, terminated, _, step_info = env.step(env.expert_response(cot=False))
        assert (reward, terminated, step_info["outcome"]) == (5.0, True, "correct")


def test_num_cards_prompt_names_the_hand_size_and_keeps_the_four_card_text():
    three = GeneralPointsEnv(num_cards=3, target=12, vision=False)
    three.reset(seed=0)
    prompt = three.system_prompt(cot=False)
    assert "The three cards are listed" in prompt and "12-points card game" in prompt
    assert '"cards": [x, y, z], the three cards' in prompt
    assert '"number": [a, b, c], the numbers the three cards' in prompt
    four = GeneralPointsEnv(vision=False)
    four.reset(seed=0)
    prompt = four.system_prompt(cot=True)
    # The default game's prompt is the one every earlier run and preset used.
    assert "The four cards are listed" in prompt and "24-points card game" in prompt
    assert '"cards": [x, y, z, w], the four cards' in prompt


def test_num_cards_images_are_one_row_and_differ_by_hand():
    env = GeneralPointsEnv(num_cards=3, target=12, image_size=96)
    first = env.reset(seed=1)[0]["image"]
    second = env.reset(seed=2)[0]["image"]
    assert first.shape == (96, 96, 3) and first.any()
    assert env.renderer.layout == "row"
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_cards": 1}, "from 2 to 6"),
        ({"num_cards": 7}, "from 2 to 6"),
        ({"num_cards": 3.0}, "integer"),
        ({"num_cards": True}, "integer"),
        ({"num_cards": 2, "target": 500}, "no hand of 2 cards reaches target 500"),
        ({"face_rule": "11-12"}, "three J-Q-K values from 1 to 13 .*'random'"),
        ({"face_rule": "0-5-5"}, "three J-Q-K values"),
        ({"face_rule": "14-1-1"}, "three J-Q-K values"),
        ({"face_rule": "randomly"}, "three J-Q-K values"),
    ],
)
def test_num_cards_refuses_bad_sizes_with_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GeneralPointsEnv(**kwargs)
