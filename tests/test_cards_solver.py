"""The solver, the counting helper, card values and seeded hand sampling."""

from __future__ import annotations

import collections

import pytest
from cards_reference import reference_solvable
from hypothesis import given, settings
from hypothesis import strategies as st

from vlrl import _core, cards
from vlrl.cards import (
    BLACK_SUITS,
    RANKS,
    RED_SUITS,
    SUITS,
    card_value,
    count_solvable,
    sample_hand,
    solve,
    verify,
)


def test_known_counts_from_the_spec() -> None:
    assert count_solvable(1, 13, 4, 24) == (1362, 1820)
    assert count_solvable(1, 10, 4, 24) == (566, 715)


def test_fraction_only_hands_are_solved() -> None:
    for hand in ([3, 3, 8, 8], [1, 5, 5, 5], [3, 3, 7, 7], [1, 4, 5, 6]):
        formula = solve(hand, 24)
        assert formula is not None
        assert verify(formula, hand, 24).outcome == "correct"


def test_unsolvable_hands() -> None:
    assert solve([1, 1, 1, 1], 24) is None
    assert solve([13, 13, 13, 13], 24) is None
    assert solve([0, 0, 0, 0, 0, 0], 1) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 13), min_size=1, max_size=4), st.integers(-20, 60))
def test_solver_agrees_with_brute_force_and_formulas_verify(values: list[int], target: int) -> None:
    formula = solve(values, target)
    assert (formula is not None) == reference_solvable(values, target)
    if formula is not None:
        assert verify(formula, values, target).outcome == "correct"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 13), min_size=5, max_size=6), st.integers(1, 200))
def test_large_hands_formulas_verify(values: list[int], target: int) -> None:
    formula = solve(values, target)
    if formula is not None:
        assert verify(formula, values, target).outcome == "correct"
    else:
        # an unsolvable 5-6 card hand must at least fail the easy constructions
        assert sum(values) != target


def test_solver_skips_overflowing_combinations() -> None:
    big = 2**62
    formula = solve([big, big, 2], 3)  # big*big overflows int64; big/big+2 does not
    assert formula is not None and verify(formula, [big, big, 2], 3).outcome == "correct"
    # (big+big)/big = 2 exactly, but big+big overflows int64: both solver and verifier
    # refuse it, consistently
    assert solve([big, big, big], 2) is None
    assert verify(f"({big}+{big})/{big}", [big, big, big], 2).outcome == "overflow"
    edge = solve([2**63 - 2, 1], 2**63 - 1)  # INT64_MAX itself is reachable
    assert edge is not None and verify(edge, [2**63 - 2, 1], 2**63 - 1).outcome == "correct"


def test_solver_is_deterministic_and_validates() -> None:
    assert solve([2, 3, 4, 6], 24) == solve([2, 3, 4, 6], 24)
    assert solve([24], 24) == "24"
    with pytest.raises(ValueError, match="empty"):
        solve([], 24)
    with pytest.raises(ValueError, match="at most 6"):
        solve([1] * 7, 24)
    with pytest.raises(ValueError, match=">= 0"):
        solve([-1, 25], 24)
    with pytest.raises(ValueError, match="n_cards"):
        count_solvable(1, 13, 7, 24)


def test_card_values() -> None:
    assert [card_value(r, "10") for r in RANKS] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]
    assert [card_value(r, "11-12-13") for r in RANKS] == list(range(1, 14))
    assert SUITS[:2] == BLACK_SUITS and SUITS[2:] == RED_SUITS
    with pytest.raises(ValueError, match="face_rule"):
        card_value("K", "12")
    with pytest.raises(ValueError, match="rank"):
        card_value("1", "10")


def test_general_face_rules() -> None:
    assert [card_value(r, "7-2-12") for r in RANKS[9:]] == [10, 7, 2, 12]
    assert cards.face_values("10") == (10, 10, 10)
    assert cards.face_values("11-12-13") == (11, 12, 13)
    # Canonical names: the core's two rules keep their names, whatever spells them.
    assert cards.face_rule_name([10, 10, 10]) == "10"
    assert cards.face_rule_name((11, 12, 13)) == "11-12-13"
    assert cards.face_rule_name([3, 13, 1]) == "3-13-1"
    for bad in ("", "10-10", "1-2-3-4", "0-1-2", "1-2-14", "a-b-c", "1--2"):
        with pytest.raises(ValueError, match="three J-Q-K values"):
            cards.face_values(bad)
    with pytest.raises(ValueError, match="three values"):
        cards.face_rule_name([1, 2])


def test_general_face_rule_hands_are_solvable_and_reproducible() -> None:
    for seed in range(100):
        hand = sample_hand(seed, 3, "at_least_one_face", "all", "2-9-5", solvable_target=12)
        assert hand == sample_hand(seed, 3, "at_least_one_face", "all", "2-9-5", 12)
        assert solve([card_value(r, "2-9-5") for r, _ in hand], 12) is not None
    # The named rules keep the core's own redraws (old runs' hands do not change).
    for seed in range(50):
        core = _core.sample_hand(seed, 4, "deck", "all", "11-12-13", 24)
        assert sample_hand(seed, face_rule="11-12-13", solvable_target=24) == [
            (RANKS[r], SUITS[s]) for r, s in core
        ]
    with pytest.raises(ValueError, match="three J-Q-K values"):
        sample_hand(0, face_rule="9-9", solvable_target=12)
    with pytest.raises(ValueError, match="three J-Q-K values"):
        sample_hand(0, face_rule="9-9")


def test_sampling_reproduces_and_pins_the_stream() -> None:
    assert sample_hand(123) == sample_hand(123)
    assert sample_hand(123) != sample_hand(124)
    # Pinned output: the generator and range reduction are ours, so this hand is the
    # same on every platform; a change here breaks reproducibility of old runs.
    assert sample_hand(0) == [("6", "hearts"), ("A", "diamonds"), ("8", "spades"), ("J", "clubs")]
    assert sample_hand(-1) == sample_hand(2**64 - 1)


def test_sampling_modes_and_filters() -> None:
    faces = {"J", "Q", "K"}
    for seed in range(300):
        deck = sample_hand(seed)
        assert len(set(deck)) == 4
        assert {r for r, _ in sample_hand(seed, sampling="at_least_one_face")} & faces
        assert {s for _, s in sample_hand(seed, suits="black")} <= set(BLACK_SUITS)
        assert {s for _, s in sample_hand(seed, suits="red")} <= set(RED_SUITS)
        hand = sample_hand(seed, face_rule="11-12-13", solvable_target=24)
        assert solve([card_value(r, "11-12-13") for r, _ in hand], 24) is not None
    repeats = sum(
        len(set(sample_hand(seed, n_cards=6, sampling="with_replacement", suits="red"))) < 6
        for seed in range(300)
    )
    assert repeats > 0  # with replacement, 6 of 26 cards repeat in ~48% of hands
    with pytest.raises(ValueError, match="exceeds the deck"):
        sample_hand(0, n_cards=27, suits="black")
    with pytest.raises(ValueError, match="sampling"):
        sample_hand(0, sampling="bag")
    with pytest.raises(RuntimeError, match="no hand solvable"):
        sample_hand(0, n_cards=1, solvable_target=99)


def test_sampling_is_uniform_over_ranks_and_suits() -> None:
    counts: collections.Counter[str] = collections.Counter()
    suit_counts: collections.Counter[str] = collections.Counter()
    n_hands = 3000
    for seed in range(n_hands):
        for rank, suit in sample_hand(seed):
            counts[rank] += 1
            suit_counts[suit] += 1
    expected = 4 * n_hands / 13
    # each count is ~Binomial(12000, 1/13): sd ~ 29; 5 sd bounds
    assert all(abs(counts[r] - expected) < 150 for r in RANKS), counts
    assert all(abs(suit_counts[s] - n_hands) < 250 for s in SUITS), suit_counts
