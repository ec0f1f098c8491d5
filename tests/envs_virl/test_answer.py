"""f for V-IRL answers and the verifier's observation check."""

from __future__ import annotations

import pytest
from vlrl.envs.virl.answer import (
    action_strings,
    mentioned_landmarks,
    normalize_action,
    observation_misstated,
    parse_navigation_answer,
)


@pytest.mark.parametrize(
    ("text", "action", "fallback"),
    [
        ('{"current observation": "x", "action": "forward()"}', "forward()", False),
        ('{"action": "Turn_Direction( North )"}', "turn_direction(north)", False),
        (
            '{"action": "turn_direction(\'slightly  LEFT\')"}',
            "turn_direction(slightly left)",
            False,
        ),
        ('{"action": "stop"}', "stop()", False),
        ('{"action": "forward()"} and then {"action": "stop()"}', "stop()", False),
        ('{"action": "forward()", }', "forward()", True),  # trailing comma: regex path
        ('{\n "current observation": "a",\n "action": "stop()",\n}', "stop()", True),
        ("action: turn_direction(east)", "turn_direction(east)", True),
        ("I would go forward.", None, True),
        ('{"thoughts": "no action key"}', None, True),
        ('{"action": 7}', None, False),
    ],
)
def test_parse_navigation_answer(text, action, fallback):
    answer = parse_navigation_answer(text)
    assert answer.action == action
    assert answer.used_fallback == fallback


def test_parse_reads_observation_and_instruction():
    answer = parse_navigation_answer(
        'Sure! {"current observation": "Hotel A is on my right; I observe an intersection",'
        ' "current instruction": "Turn right to face north.", "action": "turn_direction(north)"}'
    )
    assert answer.observation.startswith("Hotel A")
    assert answer.instruction == "Turn right to face north."
    broken = parse_navigation_answer(
        '"current_observation": "No landmarks nearby", "action": "forward()"'
    )
    assert broken.observation == "No landmarks nearby" and broken.action == "forward()"


def test_parse_never_raises_on_hostile_text():
    for text in [None, 3.5, "{" * 10_000, "\x00\udcff", '"action": "' + "a" * 50_000]:
        answer = parse_navigation_answer(text)
        assert answer.action is None or isinstance(answer.action, str)


def test_action_strings_and_normalisation():
    assert len(action_strings("absolute")) == 10 and len(action_strings("relative")) == 6
    assert "turn_direction(slightly right)" in action_strings("relative")
    assert normalize_action("  FORWARD ( ) ".replace(" ( )", "()")) == "forward()"
    assert normalize_action(None) is None


def test_observation_check():
    names = ["Hotel 32One", "Hotel 32", "Cafe Rouge"]
    truth = (["Hotel 32One"], True)
    ok = "Hotel 32One is on my right behind; I observe an intersection"
    assert not observation_misstated(ok, *truth, names)
    assert not observation_misstated(ok.lower(), *truth, names)
    assert observation_misstated("Hotel 32One is on my right behind", *truth, names)
    assert observation_misstated(
        "Cafe Rouge is on my left; I observe an intersection", *truth, names
    )
    assert observation_misstated(
        "Hotel 32One and Cafe Rouge; I observe an intersection", *truth, names
    )
    assert not observation_misstated("No landmarks nearby", [], False, names)
    assert observation_misstated("No landmarks nearby; an intersection", [], False, names)
    assert not observation_misstated(
        "No landmarks nearby; there is no intersection", [], False, names
    )
    # the longer name wins: "Hotel 32One" does not also count as "Hotel 32"
    assert mentioned_landmarks("Hotel 32One ahead", names) == {"Hotel 32One"}


def test_deeply_nested_last_object_falls_back_to_an_earlier_one():
    # json raises RecursionError (not ValueError) on deep nesting: the earlier answer
    # must still be read, as GeneralPoints' f does.
    text = '{"action": "forward()"} {"x": ' + "[" * 5000
    answer = parse_navigation_answer(text)
    assert answer.action == "forward()"
    assert not answer.used_fallback
