"""Post-processing f on friendly and hostile model outputs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import vlrl.envs  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from vlrl.envs import parse_action
from vlrl.envs.parsing import canonical_card, choose_action, extract_action, parse_points_answer

NUMBERLINE = ["+", "-"]
BLACKJACK = ["stand", "hit"]
POINTS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "+", "-", "*", "/", "(", ")", "="]


@pytest.mark.parametrize(
    ("text", "names", "expected"),
    [
        ('{"action": "+"}', NUMBERLINE, "+"),
        ('{"thoughts": "go down", "action": "-"}', NUMBERLINE, "-"),
        ('```json\n{"action": "hit"}\n```', BLACKJACK, "hit"),
        ('{"Action": "HIT"}', BLACKJACK, "hit"),
        ("{'action': 'stand'}", BLACKJACK, "stand"),
        ('{"action": "+", "action": "-"}', NUMBERLINE, "-"),  # the last key wins
        ('"action": 10}', POINTS, "10"),  # bare number, truncated JSON
        ('{"action": "10"', POINTS, "10"),
        ('{"action": " = "}', POINTS, "="),
        ('I think the action: "(" is best', POINTS, "("),
    ],
)
def test_extracts_the_last_action(text, names, expected):
    index, fallback = choose_action(text, names, rng=np.random.default_rng(0))
    assert names[index] == expected
    assert fallback is False


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", NUMBERLINE),
        ("I would press plus", NUMBERLINE),
        ('{"action": "-" or "+"}', NUMBERLINE),  # the template copied: ambiguous
        ('{"action": "double"}', BLACKJACK),
        ('{"action": "11"}', POINTS),
        ('{"action": ""}', NUMBERLINE),
        ('{"action": "+-"}', NUMBERLINE),
        ("{" * 50_000, NUMBERLINE),
        ('"action": "' + "x" * 100_000, NUMBERLINE),
        ("\u0000\ud800\U0001f600 action \u202e", BLACKJACK),
    ],
)
def test_fallback_is_flagged_and_in_the_action_set(text, names):
    index, fallback = choose_action(text, names, rng=np.random.default_rng(0))
    assert 0 <= index < len(names)
    assert fallback is True
    assert extract_action(text, names) is None


def test_fallback_is_uniform_over_the_action_set():
    rng = np.random.default_rng(1)
    draws = [choose_action("no answer", POINTS, rng=rng)[0] for _ in range(17_000)]
    counts = np.bincount(draws, minlength=len(POINTS))
    # 1000 expected per action; 5 standard deviations of a binomial is about 155.
    assert np.all(np.abs(counts - 1000) < 160), counts


def test_legal_only_fallback_draws_legal_actions():
    mask = np.zeros(len(POINTS), bool)
    mask[[2, 9, 16]] = True
    rng = np.random.default_rng(2)
    draws = {choose_action("???", POINTS, mask, rng)[0] for _ in range(300)}
    assert draws == {2, 9, 16}


def test_parse_action_on_an_env_uses_its_generator_and_legal_mask():
    env = gym.make("vlrl/Points24-v0")
    env.reset(seed=3)
    legal = set(np.nonzero(env.unwrapped.legal_mask())[0])
    for _ in range(50):
        index, fallback = parse_action(env, "garbage", legal_only=True)
        assert fallback and index in legal
    env.reset(seed=3)
    first = [parse_action(env, "garbage")[0] for _ in range(20)]
    env.reset(seed=3)
    second = [parse_action(env, "garbage")[0] for _ in range(20)]
    assert first == second  # seeded through the env's np_random
    index, fallback = parse_action(env, '{"action": "*"}')
    assert env.unwrapped.action_names[index] == "*" and not fallback


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_f_never_raises_on_any_text(text):
    index, fallback = choose_action(text, POINTS, rng=np.random.default_rng(0))
    assert 0 <= index < len(POINTS)
    assert isinstance(fallback, bool)
    answer = parse_points_answer(text)
    assert isinstance(answer.formula, str)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(POINTS), st.text(max_size=80).filter(lambda s: "action" not in s.lower()))
def test_a_well_formed_answer_after_any_prefix_is_found(action, prefix):
    text = prefix + '\n{"thoughts": "...", "action": "' + action + '"}'
    index, fallback = choose_action(text, POINTS, rng=np.random.default_rng(0))
    assert POINTS[index] == action and not fallback


# ----------------------------------------------------------------- GeneralPoints


def test_points_answer_from_json():
    answer = parse_points_answer(
        'Sure.\n```json\n{"cards": ["A", "3", "K", "6"], "number": [1, 3, 10, 6], '
        '"thoughts": {"plan": "x"}, "formula": "(1+6)*3+13=24"}\n```'
    )
    assert answer.cards == ("A", "3", "K", "6")
    assert answer.numbers == (1, 3, 10, 6)
    assert answer.formula == "(1+6)*3+13=24"
    assert answer.used_fallback is False


def test_points_answer_with_wrong_case_and_duplicate_keys():
    answer = parse_points_answer('{"Formula": "1+1", "CARDS": ["ace", "Queen"], "formula": "2*3"}')
    assert answer.formula == "2*3"
    assert answer.cards == ("A", "Q")
    assert not answer.used_fallback


def test_points_answer_falls_back_to_regex_on_broken_json():
    answer = parse_points_answer(
        '{"cards": [\'10\', \'J\', 5, 7], "number": [10, 10, 5, 7], "formula": "10+10-5+7='
    )
    assert answer.used_fallback is True
    assert answer.cards == ("10", "J", "5", "7")
    assert answer.numbers == (10, 10, 5, 7)
    assert answer.formula == "10+10-5+7="


def test_points_answer_with_nothing_in_it():
    for text in ["", "no idea", "{" * 100_000, "\ud800" * 10, '{"formula": ' * 20_000]:
        answer = parse_points_answer(text)
        assert answer.formula == "" or isinstance(answer.formula, str)
        assert answer.used_fallback is True


def test_canonical_card_spellings():
    assert [
        canonical_card(x) for x in ["a", 1, "ACE", "10", 10.0, "k", "Jack", "12", "0", True]
    ] == [
        "A",
        "A",
        "A",
        "10",
        "10",
        "K",
        "J",
        "Q",
        None,
        None,
    ]


def test_parse_action_refuses_text_action_envs_with_a_clear_error():
    env = gym.make("vlrl/GeneralPoints-v0")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="step"):
        parse_action(env, '{"formula": "1+2"}')
