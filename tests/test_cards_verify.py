"""The formula verifier: fixed cases, hostile input, hypothesis fuzzing vs the Fraction reference."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from cards_reference import OUTCOMES, reference_verify
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlrl import cards
from vlrl.cards import Verdict, verify

INT64_MAX = 2**63 - 1


def test_outcome_names_match_the_contract() -> None:
    assert cards.OUTCOMES == OUTCOMES


@pytest.mark.parametrize(
    ("formula", "values", "target", "outcome", "value"),
    [
        ("8/(3-8/3)", [3, 3, 8, 8], 24, "correct", Fraction(24)),  # float eval says 23.999...
        ("(1+2+3)*4", [1, 2, 3, 4], 24, "correct", Fraction(24)),
        ("(1+2+3)*4 =", [4, 3, 2, 1], 24, "correct", Fraction(24)),
        ("(1+2+3)*4 = 24", [1, 2, 3, 4], 24, "correct", Fraction(24)),
        ("(1+2+3)*4 = 99", [1, 2, 3, 4], 24, "correct", Fraction(24)),  # claimed N ignored
        ("1+2+3+4", [1, 2, 3, 4], 24, "wrong_value", Fraction(10)),
        ("1/3+2+4", [1, 2, 3, 4], 24, "wrong_value", Fraction(19, 3)),
        ("10-4-3-2", [2, 3, 4, 10], 1, "correct", Fraction(1)),  # left associative
        ("8/4/2*1", [1, 2, 4, 8], 1, "correct", Fraction(1)),
        ("2+3*4", [2, 3, 4], 14, "correct", Fraction(14)),  # precedence
        ("5*5-1", [1, 5, 5], 24, "correct", Fraction(24)),
        ("12*2", [1, 2, 3, 4], 24, "unknown_number", Fraction(24)),
        ("4*3*2", [1, 2, 3, 4], 24, "card_count", Fraction(24)),  # a card unused
        ("4*3*2*1*1", [1, 2, 3, 4], 24, "card_count", Fraction(24)),  # a card used twice
        ("12*2 + 1/0", [1, 2, 3, 4], 24, "division_by_zero", None),  # before unknown_number
        ("1/(2-2)", [1, 2, 2], 24, "division_by_zero", None),
        ("(1+2", [1, 2], 3, "syntax_error", None),
        ("1+2)", [1, 2], 3, "syntax_error", None),
        ("1 2", [1, 2], 12, "syntax_error", None),  # two numbers never join
        ("3(4)", [3, 4], 12, "syntax_error", None),
        ("-3+4", [3, 4], 1, "syntax_error", None),  # no unary minus
        ("1.5*2", [1, 2], 3, "syntax_error", None),
        ("1+2 = 3 = 3", [1, 2], 3, "syntax_error", None),
        ("= 3", [3], 3, "syntax_error", None),
        ("1/0 +", [1], 1, "syntax_error", None),  # syntax error outranks division by zero
        ("4 * 6\n", [4, 6], 24, "correct", Fraction(24)),
        ("007*2", [7, 2], 14, "correct", Fraction(14)),
    ],
)
def test_fixed_cases(
    formula: str, values: list[int], target: int, outcome: str, value: Fraction | None
) -> None:
    verdict = verify(formula, values, target)
    assert verdict.outcome == outcome
    assert verdict.value == value
    assert verdict.correct == (outcome == "correct")


def test_numbers_in_order_without_the_claimed_result() -> None:
    verdict = verify("(10 - 4) * 2 * 2 = 24", [2, 2, 4, 10], 24)
    assert verdict == Verdict("correct", Fraction(24), (10, 4, 2, 2))
    assert verify("", [1], 1).numbers == ()
    assert verify("1 + x", [1], 1).numbers == ()  # did not tokenize


def test_overflow_and_int64_edges() -> None:
    big = str(10**30)
    assert verify(big, [1], 1).outcome == "overflow"
    assert verify(big, [1], 1).numbers == ()
    assert verify(f"{big} + (", [1], 1).outcome == "syntax_error"  # syntax first
    assert verify(f"{big} + 1/0", [1], 1).outcome == "division_by_zero"
    assert verify(str(INT64_MAX), [INT64_MAX], INT64_MAX).outcome == "correct"
    assert verify(str(INT64_MAX + 1), [1], 1).outcome == "overflow"
    assert verify(f"{INT64_MAX}+1", [INT64_MAX, 1], 1).outcome == "overflow"
    assert verify(f"{INT64_MAX}*2/2", [INT64_MAX, 2, 2], 1).outcome == "overflow"
    assert verify("3037000500*3037000500", [3037000500], 1).outcome == "overflow"
    # a fraction whose reduced form fits is fine
    assert verify(f"{INT64_MAX}/{INT64_MAX}", [INT64_MAX, INT64_MAX], 1).outcome == "correct"
    assert verify(f"1+1 = {big}", [1, 1], 2).outcome == "correct"  # claimed N is ignored


def test_hostile_inputs_get_an_outcome() -> None:
    rng = random.Random(7)
    hostile = [
        "",
        "   \t\n",
        "=",
        "()",
        "((((",
        "))))",
        "+",
        "1+",
        "x" * 10_000,
        "".join(rng.choice("0123456789+-*/()= ") for _ in range(10_000)),
        "1+" * 5_000 + "1",
        "9" * 10_000,
        "24 🂡 🂮",
        "２４",  # fullwidth digits are not ASCII digits
        "١٢",  # Arabic-Indic digits
        "\ud800\udfff",  # lone surrogates
        "1\x002",
        "\u202e4*6",
        "4×6",
        "(" * 5_000 + ")" * 5_000,
    ]
    for text in hostile:
        verdict = verify(text, [1, 2, 3, 4], 24)
        assert verdict.outcome in OUTCOMES
        assert verdict.outcome == reference_verify(text, [1, 2, 3, 4], 24)[0]
    assert verify("x" * 10_000, [1], 1).outcome == "syntax_error"
    assert verify("4×6", [4, 6], 24).outcome == "syntax_error"


def test_deep_parentheses() -> None:
    deep = "(" * 500 + "4*6" + ")" * 500
    assert verify(deep, [4, 6], 24) == Verdict("correct", Fraction(24), (4, 6))
    assert verify("(" * 1000 + "24" + ")" * 1000, [24], 24).outcome == "correct"
    assert verify("(" * 1001 + "24" + ")" * 1001, [24], 24).outcome == "syntax_error"
    assert verify("(" * 500 + "4*6" + ")" * 499, [4, 6], 24).outcome == "syntax_error"


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="formula must be a str"):
        verify(None, [1], 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="values"):
        verify("1", "1", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64-bit"):
        verify("1", [1], 10**30)


def _check_against_reference(formula: str, values: list[int], target: int) -> None:
    ours = verify(formula, values, target)
    outcome, value, numbers = reference_verify(formula, values, target)
    assert (ours.outcome, ours.value, ours.numbers) == (outcome, value, numbers), formula


_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(
    st.text(alphabet="0123456789+-*/()= \t", max_size=40),
    st.lists(st.integers(0, 13), min_size=1, max_size=6),
    st.integers(-30, 60),
)
def test_fuzz_random_text(formula: str, values: list[int], target: int) -> None:
    _check_against_reference(formula, values, target)


@st.composite
def _expressions(draw: st.DrawFn, depth: int = 0) -> str:
    """Mostly well-formed expressions over small and occasionally huge literals."""
    if depth >= 4 or draw(st.integers(0, 2)) == 0:
        literal = draw(st.one_of(st.integers(0, 13), st.integers(0, 10**20)))
        return str(literal)
    left = draw(_expressions(depth + 1))
    right = draw(_expressions(depth + 1))
    op = draw(st.sampled_from("+-*/"))
    space = draw(st.sampled_from(["", " "]))
    text = f"{left}{space}{op}{space}{right}"
    return f"({text})" if draw(st.booleans()) else text


@_FUZZ
@given(
    _expressions(),
    st.lists(st.integers(0, 13), min_size=1, max_size=6),
    st.integers(-30, 60),
    st.sampled_from(["", "=", " = 24", "= 7"]),
)
def test_fuzz_expressions(formula: str, values: list[int], target: int, tail: str) -> None:
    _check_against_reference(formula + tail, values, target)


@_FUZZ
@given(st.lists(st.integers(1, 13), min_size=2, max_size=4), st.data())
def test_fuzz_formulas_over_the_hand(values: list[int], data: st.DataObject) -> None:
    """Formulas built from the hand itself hit correct/wrong_value/card_count often."""
    picked = data.draw(st.permutations(values))
    if data.draw(st.booleans()):
        picked = picked[:-1] if len(picked) > 1 else picked + picked
    ops = data.draw(st.lists(st.sampled_from("+-*/"), min_size=len(picked), max_size=len(picked)))
    formula = str(picked[0]) + "".join(
        f"{op}{v}" for op, v in zip(ops[1:], picked[1:], strict=True)
    )
    target = data.draw(st.integers(0, 30))
    _check_against_reference(formula, values, target)


@_FUZZ
@given(st.text(max_size=60), st.integers(0, 30))
def test_fuzz_arbitrary_unicode(formula: str, target: int) -> None:
    _check_against_reference(formula, [1, 2, 3, 4], target)
