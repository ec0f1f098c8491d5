"""Card games core: formula verifier, solver, card sampling and batched game stepping.

This is the Python face of the C++ extension ``vlrl._core``, the single home of the
game rules and formula arithmetic (envs call it, never re-implement it).

Formula rules (``verify``):
    * ASCII integers, ``+ - * / ( )``, whitespace, and an optional trailing ``=`` or
      ``= N``. ``N`` is ignored (the verdict is about the expression) and is not a card.
    * No unary minus, decimals or implicit multiplication. Two numbers one after
      another (``"1 2"``) are a syntax error: a number is one run of digits.
    * Exact rational arithmetic on int64 with overflow detection (``8/(3-8/3)`` is 24).
      A literal beyond int64 is an overflow and the verdict then lists no numbers.
    * Parentheses nested deeper than 1000 levels are a syntax error.
    * Precedence when several outcomes apply (first wins): ``syntax_error`` >
      ``division_by_zero`` > ``overflow`` > ``unknown_number`` (a number that is no
      card's value) > ``card_count`` (a card used twice or left unused) >
      ``wrong_value`` / ``correct``.

Game rules (``BatchedGames``; SPEC section 1, details in the csrc/ headers):
    * NumberLine: target x and start y uniform in [0, n_max], x != y. Actions "+", "-"
      clamped at the bounds. +1 on reaching x (terminated); -1 for a move that does not
      bring y closer (a blocked move included); else 0. Truncated after 2 * n_max steps
      with no extra penalty.
    * EZPoints (2 cards, target 12, J/Q/K = 10, actions "1".."10", "+", "*", "="):
      first card 2..K, second card's value uniform over those that reach 12 by + or *.
    * Points24 (4 cards drawn with replacement by default, target 24, actions
      "1".."10" or "1".."13" under face_rule "11-12-13", "+ - * / ( ) ="); not always
      solvable (``solvable`` tells).
    * Points games: a number is legal only when an unused card has that value; an
      illegal action gives -1 and leaves the state unchanged; other actions give 0.
      "=" terminates: +10 if every card is used and the formula equals the target,
      else -1 (unused cards included). Two numbers in a row are rendered with a space
      and so never join. Time limit T = 5 (EZPoints) / 20 (Points24) steps, every step
      counted; the truncating step's reward is -1 (not added to an illegal -1).
    * Blackjack: Gymnasium Blackjack-v1 with sab=False (infinite deck, dealer draws to
      17, +1/0/-1, natural=True pays 1.5 for a winning two-card 21). Actions "stand",
      "hit" (gymnasium's 0 = stick, 1 = hit).
    * ``success`` is true on the step that ends an episode whose return is > 0.

Randomness comes from the core's own generator (xoshiro256** seeded by splitmix64,
own rejection-sampling range reduction), so seeds reproduce across platforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from vlrl import _core

__all__ = [
    "BLACK_SUITS",
    "OUTCOMES",
    "RANKS",
    "RED_SUITS",
    "SUITS",
    "BatchedGames",
    "Verdict",
    "card_value",
    "count_solvable",
    "face_rule_name",
    "face_values",
    "sample_hand",
    "solve",
    "verify",
    "verify_batch",
]

OUTCOMES: tuple[str, ...] = tuple(_core.outcome_names())
RANKS: tuple[str, ...] = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS: tuple[str, ...] = ("spades", "clubs", "hearts", "diamonds")
BLACK_SUITS: tuple[str, ...] = ("spades", "clubs")
RED_SUITS: tuple[str, ...] = ("hearts", "diamonds")
FACE_RULES: tuple[str, ...] = ("10", "11-12-13")  # the rules the C++ core knows by name
FACE_VALUE_RANGE = (1, 13)  # a general rule's J/Q/K values lie in this range
MAX_HAND_DRAWS = 100_000  # as the core's kMaxSolvableAttempts
GAMES: tuple[str, ...] = ("NumberLine", "EZPoints", "Points24", "Blackjack")

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MOD = 2**64


@dataclass(frozen=True)
class Verdict:
    """Result of checking one formula against a hand and a target.

    ``outcome`` is one of ``OUTCOMES``; ``value`` is the exact value of the expression
    when it evaluated (None on syntax error, division by zero or overflow); ``numbers``
    are the formula's numbers in order (empty when it did not tokenize).
    """

    outcome: str
    value: Fraction | None
    numbers: tuple[int, ...]

    @property
    def correct(self) -> bool:
        """True when the formula uses every card once and equals the target."""
        return self.outcome == "correct"


def _check_int64(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not _INT64_MIN < value <= _INT64_MAX:
        raise ValueError(f"{name} = {value} does not fit in a signed 64-bit integer")
    return value


def _seed_bits(name: str, seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}")
    return int(seed) % _UINT64_MOD


def _check_values(values: object) -> list[int]:
    if isinstance(values, str | bytes):
        raise TypeError("values must be a sequence of ints, not a string")
    try:
        items = list(values)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"values must be a sequence of ints, got {type(values).__name__}") from None
    return [_check_int64("card value", v) for v in items]


def _check_int_array(name: str, values: object) -> np.ndarray:
    """``values`` as an int64 array; TypeError for floats, bools or strings (never
    truncated), ValueError for an int beyond int64 (never wrapped)."""
    array = np.asarray(values)
    if array.dtype == object:  # Python ints beyond int64, or mixed items: check each
        for item in array.flat:
            _check_int64(name, item)
    elif array.dtype.kind not in "iu" and array.size:
        raise TypeError(f"{name} must be ints, got {array.dtype} values")
    elif array.dtype.kind == "u" and array.size and array.max() > _INT64_MAX:
        raise ValueError(f"{name} = {array.max()} does not fit in a signed 64-bit integer")
    return array.astype(np.int64)


def verify(formula: str, values: list[int], target: int) -> Verdict:
    """Classify ``formula`` against the card ``values`` and ``target``.

    Never raises for any string (garbage, unicode, huge or deeply nested input gets an
    outcome); raises TypeError/ValueError only when ``values``/``target`` are not ints
    in int64 range or ``formula`` is not a str. See the module docstring for the rules.
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a str, got {type(formula).__name__}")
    # surrogatepass: lone surrogates reach the core as bytes (then a syntax error)
    # instead of raising UnicodeEncodeError here.
    encoded = formula.encode("utf-8", "surrogatepass")
    try:
        outcome, has_value, num, den, numbers = _core.verify(encoded, values, target)
    except TypeError:
        # The core refused the hand or target: say precisely what is wrong with them.
        _check_values(values)
        _check_int64("target", target)
        raise
    if not has_value:
        return Verdict(outcome, None, numbers)
    # Fraction(int) skips normalisation; most values are integers.
    return Verdict(outcome, Fraction(num) if den == 1 else Fraction(num, den), numbers)


def verify_batch(
    formulas: Sequence[str], hands: np.ndarray | Sequence[Sequence[int]], target: int | np.ndarray
) -> np.ndarray:
    """Outcome codes (int8, index into ``OUTCOMES``) of many formulas in one core call.

    ``hands`` is [M, k] (one row of card values per formula), ``target`` a scalar or an
    [M] array. Same rules as ``verify``; the GIL is released while it runs. Use it where
    throughput matters (reward computation over a batch); ``verify`` gives the value and
    numbers too. Hands and targets must be ints in int64 range, as for ``verify``: a
    float hand (``[[1.5, 2]]``) or target is a TypeError, never truncated.
    """
    texts = formulas if isinstance(formulas, list) else list(formulas)  # core checks str
    hand_array = _check_int_array("hands", hands)
    if hand_array.ndim != 2 or hand_array.shape[0] != len(texts):
        raise ValueError(f"hands must have shape [{len(texts)}, k], got {hand_array.shape}")
    targets = np.broadcast_to(_check_int_array("target", target), (len(texts),))
    return _core.verify_batch(texts, hand_array, np.ascontiguousarray(targets))


def solve(values: list[int], target: int) -> str | None:
    """An expert formula reaching ``target`` with every value once, or None.

    Supports 1 to 6 non-negative values and any int64 target; exact rational search,
    deterministic. The formula uses minimal parentheses and no spaces and always
    verifies as "correct". Raises ValueError for an empty hand, more than 6 values or a
    negative value.
    """
    cards = _check_values(values)
    goal = _check_int64("target", target)
    return _core.solve(cards, goal)


def count_solvable(low: int, high: int, n_cards: int, target: int) -> tuple[int, int]:
    """(solvable, total) over all multisets of ``n_cards`` values from ``low..high``.

    With values 1..13 and target 24 this is (1362, 1820); with 1..10, (566, 715).
    """
    return _core.count_solvable(
        _check_int64("low", low),
        _check_int64("high", high),
        _check_int64("n_cards", n_cards),
        _check_int64("target", target),
    )


def face_values(face_rule: str) -> tuple[int, int, int]:
    """The values of J, Q and K under a face rule: "10" (each 10), or a general rule
    "j-q-k" of three values from 1 to 13 ("11-12-13" is one; "7-2-12" counts J as 7,
    Q as 2, K as 12). GeneralPoints takes any general rule; the C++ games take the two
    named ones (``FACE_RULES``)."""
    if face_rule == "10":
        return (10, 10, 10)
    parts = face_rule.split("-") if isinstance(face_rule, str) else []
    low, high = FACE_VALUE_RANGE
    if len(parts) != 3 or not all(p.isdigit() and low <= int(p) <= high for p in parts):
        raise ValueError(
            f"face_rule must be '10' or three J-Q-K values from {low} to {high} joined by "
            f"'-' (such as '11-12-13' or '7-2-12'), got {face_rule!r}"
        )
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def face_rule_name(values: Sequence[int]) -> str:
    """The face rule whose J, Q, K values are ``values``; the canonical name, so that the
    two rules the core knows ("10", "11-12-13") are always written that way."""
    if len(values) != 3:
        raise ValueError(f"a face rule has three values (J, Q, K), got {list(values)!r}")
    name = "10" if tuple(values) == (10, 10, 10) else "-".join(str(int(v)) for v in values)
    face_values(name)  # range check
    return name


def card_value(rank: str, face_rule: str = "10") -> int:
    """Value of a rank ("A".."K"): A = 1, 2..10 as printed, J/Q/K = 10 under face rule
    "10", 11/12/13 under "11-12-13", and the rule's values under a general "j-q-k"."""
    if rank not in RANKS:
        raise ValueError(f"rank must be one of {RANKS}, got {rank!r}")
    if face_rule in FACE_RULES:
        return _core.card_value(RANKS.index(rank), face_rule)
    return _general_value(RANKS.index(rank), face_values(face_rule))


def _general_value(rank_index: int, faces: tuple[int, int, int]) -> int:
    """A rank's value (by index into ``RANKS``) when J, Q and K are worth ``faces``."""
    return rank_index + 1 if rank_index < 10 else faces[rank_index - 10]


def sample_hand(
    seed: int,
    n_cards: int = 4,
    sampling: str = "deck",
    suits: str = "all",
    face_rule: str = "10",
    solvable_target: int | None = None,
) -> list[tuple[str, str]]:
    """Draw a reproducible hand of (rank, suit) pairs from ``seed``.

    sampling: "deck" (n distinct cards of the colour-filtered deck), "at_least_one_face"
    (as deck, redrawn until it holds a J/Q/K), "with_replacement" (each card uniform).
    suits: "all", "black" (spades, clubs) or "red" (hearts, diamonds). With
    ``solvable_target`` the hand is redrawn until the solver reaches that target under
    ``face_rule`` (at most 1..6 cards; RuntimeError if 100000 draws find none).
    The same arguments give the same hand on every platform.
    """
    seed_bits = _seed_bits("seed", seed)
    target = None if solvable_target is None else _check_int64("solvable_target", solvable_target)
    named = face_rule in FACE_RULES
    faces = face_values(face_rule)  # a bad rule fails here; parsed once for the redraws
    if named or target is None:
        core_rule = face_rule if named else "10"  # without a target the rule decides nothing
        hand = _core.sample_hand(
            seed_bits, _check_int64("n_cards", n_cards), sampling, suits, core_rule, target
        )
        return [(RANKS[rank], SUITS[suit]) for rank, suit in hand]
    # A general rule: the core draws hands (its rules only tell which are solvable), and
    # each redraw takes the next seed of a fixed sequence, so the hand stays reproducible.
    for attempt in range(MAX_HAND_DRAWS):
        attempt_seed = (seed_bits + attempt * 0x9E3779B97F4A7C15) % _UINT64_MOD
        hand = sample_hand(attempt_seed, n_cards, sampling, suits, "10", None)
        values = [_general_value(RANKS.index(rank), faces) for rank, _ in hand]
        if solve(values, target) is not None:
            return hand
    raise RuntimeError(
        f"no hand of {n_cards} cards reaching {target} under face rule {face_rule!r} "
        f"in {MAX_HAND_DRAWS} draws"
    )


_AUTO_RESET_MODES = {False: "none", True: "next_step"}


class BatchedGames(_core.BatchedGames):
    """N instances of one card game stepped together in C++ (GIL released).

    Args:
        game: "NumberLine", "EZPoints", "Points24" or "Blackjack".
        num_envs: number of environments N.
        seed: env i's generator is seeded with seed + i at construction (and with
            ``seeds[i]`` by ``reset(seeds)``; ``reset()`` without seeds continues each
            env's own stream so successive episodes differ).
        n_max: NumberLine's largest position.
        target: points games' target (default 12 for EZPoints, 24 for Points24).
        face_rule: "10" or "11-12-13" (Points24 only; EZPoints counts J/Q/K as 10).
        natural: Blackjack pays 1.5 for a winning natural.
        auto_reset: False (a finished env ignores actions until reset), True or
            "next_step" (gymnasium's default: the next step resets it, ignoring its
            action, reward 0), or "same_step" (reset inside the ending step; that step's
            reward/flags/success describe the finished episode).
        sampling: Points24 dealing, "with_replacement" (default), "deck" or
            "at_least_one_face".
        suits: "all", "black" or "red" (points games).
        n_cards: Points24 hand size (default 4).

    Methods: ``reset(seeds=None)``, ``reset_some(indices, seeds=None)``,
    ``step(actions int[N]) -> (rewards f32[N], terminated bool[N], truncated bool[N])``
    (any integer dtype; before any env moves, TypeError for a float, bool or other
    non-integer array, never truncated, and ValueError for a code outside
    [0, len(action_names)), checked before narrowing, so an int64 2**32 + 1 never
    wraps to 1),
    ``legal_mask() -> bool[N, A]``, ``formula(i)`` (points games).
    State (numpy copies): all games ``elapsed``, ``success``, ``done``,
    ``episode_return``; NumberLine ``target``, ``current``, ``n_max``; points games
    ``target`` (the fixed target, per env),
    ``cards`` (rank index 0..12) / ``suits`` (index into SUITS) / ``values`` / ``used``
    [N, k], ``solvable`` [N], ``points_target``; Blackjack ``player_cards``,
    ``dealer_cards`` (rank index, -1 pad) and ``player_suits``, ``dealer_suits``
    [N, 24], ``n_player_cards``, ``n_dealer_cards``, ``player_sum``, ``dealer_sum``,
    ``dealer_showing`` (value 1..10), ``usable_ace``. Accessing another game's state
    raises AttributeError.
    """

    def __init__(
        self,
        game: str,
        num_envs: int,
        seed: int,
        *,
        n_max: int = 5,
        target: int | None = None,
        face_rule: str = "10",
        natural: bool = False,
        auto_reset: bool | str = False,
        sampling: str | None = None,
        suits: str = "all",
        n_cards: int = 4,
    ) -> None:
        if game not in GAMES:
            raise ValueError(f"game must be one of {GAMES}, got {game!r}")
        mode = _AUTO_RESET_MODES.get(auto_reset, auto_reset)  # type: ignore[call-overload]
        if mode not in ("none", "next_step", "same_step"):
            raise ValueError(
                f"auto_reset must be False, True, 'next_step' or 'same_step', got {auto_reset!r}"
            )
        super().__init__(
            game,
            _check_int64("num_envs", num_envs),
            _seed_bits("seed", seed),
            n_max=_check_int64("n_max", n_max),
            target=None if target is None else _check_int64("target", target),
            face_rule=face_rule,
            natural=bool(natural),
            auto_reset=mode,
            sampling=sampling,
            suits=suits,
            n_cards=_check_int64("n_cards", n_cards),
        )

    def __repr__(self) -> str:
        return f"BatchedGames(game={self.game!r}, num_envs={self.num_envs})"
