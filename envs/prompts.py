"""Prompts h(o), expert responses and verifier messages of the card environments.

Each task has a chain-of-thought (CoT) prompt and a plain one. The JSON answer formats
follow the dissertation's figures (C.2 NumberLine, C.4 EZPoints, C.6 Points24, C.8
Blackjack, D.1/D.2 GeneralPoints): the CoT format asks for the state read-out fields
and "thoughts" before "action" (or "formula"); the plain format asks for the answer
key alone (GeneralPoints keeps "cards" and "number", which its verifier checks).

The expert responses are the SFT targets: valid JSON in the same format, with the
read-out fields filled with the true state, so that a model trained on them learns to
read the image first and then act (FINDINGS.md: the read-out is what makes a tiny VLM
learn NumberLine at all).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from vlrl import cards


def _options(action_names: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{a}'" for a in action_names) + "]"


def _answer(fields: dict) -> str:
    return json.dumps(fields, ensure_ascii=False)


def face_rule_note(face_rule: str) -> str:
    """The prompt's sentence part that states how face cards count ("10", "11-12-13" or
    a general "j-q-k" rule, ``vlrl.cards.face_values``)."""
    jack, queen, king = cards.face_values(face_rule)
    if jack == queen == king:
        return f"'J', 'Q' and 'K' each count as {jack}"
    return f"'J', 'Q' and 'K' count as {jack}, {queen} and {king}"


# --------------------------------------------------------------------------- NumberLine


def numberline_prompt(cot: bool = True) -> str:
    """h(o) for NumberLine; the state is only in the image."""
    intro = (
        "You are playing the number line game. The image shows a target number and a "
        "current number. Your goal is to bring the current number closer to the target, "
        "one step at a time, by adding one to it or subtracting one from it. You can "
        "choose between ['+', '-']. Reply with a valid json object in this format:\n"
    )
    if cot:
        return intro + (
            "{\n"
            '  "current number": "x",\n'
            '  "target number": "x",\n'
            '  "thoughts": "{read the current number and the target number first, then '
            'decide which action moves the current number toward the target}",\n'
            '  "action": "-" or "+"\n'
            "}"
        )
    return intro + '{\n  "action": "-" or "+"\n}'


def numberline_expert(target: int, current: int, cot: bool = True) -> str:
    """The expert's answer: "+" below the target, "-" above it."""
    action = "+" if current < target else "-"
    if not cot:
        return _answer({"action": action})
    relation = "smaller" if current < target else "larger"
    verb = "add one" if action == "+" else "subtract one"
    thoughts = f"{current} is {relation} than {target}, so I {verb}."
    return _answer(
        {
            "current number": str(current),
            "target number": str(target),
            "thoughts": thoughts,
            "action": action,
        }
    )


# ---------------------------------------------------------------- EZPoints and Points24


def points_prompt(
    n_cards: int,
    formula: str,
    action_names: Sequence[str],
    target: int,
    face_rule: str = "10",
    cot: bool = True,
) -> str:
    """h(o) for EZPoints (2 cards, target 12) and Points24 (4 cards, target 24)."""
    count = {2: "two", 4: "four"}.get(n_cards, str(n_cards))
    placeholders = ", ".join("xyzwvu"[i] if i < 6 else f"c{i}" for i in range(n_cards))
    intro = (
        f"You are an experienced player of a card arithmetic game. The image shows {count} cards. "
        f"The current formula is '{formula}'. You can choose between {_options(action_names)}. "
        "Whatever you pick is added to the end of the formula. "
        f"Note that {face_rule_note(face_rule)}. Your goal is a formula that evaluates to "
        f"{target}, using the number of every card exactly once. "
        "Reply with a valid json object in this format:\n"
    )
    if cot:
        return intro + (
            "{\n"
            f'  "cards": [{placeholders}],\n'
            f'  "current formula": "{formula}",\n'
            '  "thoughts": "{first check whether the current formula is complete; if it is, '
            f"choose '='; otherwise decide which number or operator to append so that the "
            f'formula reaches {target}}}",\n'
            '  "action": "{number}" or "{operator}"\n'
            "}"
        )
    return intro + '{\n  "action": "{number}" or "{operator}"\n}'


def points_expert(
    values: Sequence[int],
    formula: str,
    action: str,
    solution: str | None,
    target: int,
    cot: bool = True,
) -> str:
    """The expert's answer: the next token of ``solution`` (or "=" when done/hopeless)."""
    if not cot:
        return _answer({"action": action})
    if action == "=":
        if solution is None:
            thoughts = f"No formula with these cards reaches {target}, so I end with '='."
        else:
            thoughts = f"'{formula}' is complete and equals {target}, so I choose '='."
    else:
        state = f"'{formula}' is not complete" if formula else "The formula is empty"
        thoughts = f"{state}; since {solution}={target}, I append '{action}'."
    return _answer(
        {
            "cards": [int(v) for v in values],
            "current formula": formula,
            "thoughts": thoughts,
            "action": action,
        }
    )


# ------------------------------------------------------------------------- Blackjack


def blackjack_prompt(cot: bool = True) -> str:
    """h(o) for Blackjack; the state is only in the image."""
    intro = (
        "You are playing blackjack. The image shows the dealer's cards (one of them face "
        "down) and your cards. You can choose between ['stand', 'hit']. "
        "Reply with a valid json object in this format:\n"
    )
    if cot:
        return intro + (
            "{\n"
            '  "thoughts": "{first state your total points and the points of the dealer\'s '
            'visible card, then decide which action to take}",\n'
            '  "action": "stand" or "hit"\n'
            "}"
        )
    return intro + '{\n  "action": "stand" or "hit"\n}'


def blackjack_expert(
    player_sum: int, dealer_showing: int, usable_ace: bool, action: str, cot: bool = True
) -> str:
    """The expert's (basic strategy) answer for the given state."""
    if not cot:
        return _answer({"action": action})
    soft = " (a soft total, my ace counts 11)" if usable_ace else ""
    thoughts = (
        f"I have {player_sum} points{soft} and the dealer shows {dealer_showing} points. "
        f"I should {action}."
    )
    return _answer({"thoughts": thoughts, "action": action})


# --------------------------------------------------------------------- GeneralPoints

_COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def general_points_prompt(
    cards: Sequence[str] | None,
    target: int = 24,
    face_rule: str = "10",
    cot: bool = True,
    n_cards: int = 4,
) -> str:
    """System prompt v_0^in of GeneralPoints.

    ``cards`` (rank strings) are written into the prompt for the language-only variant
    GP-L (the hand size is then their count); pass None for GP-VL, where the cards are
    only in the image and ``n_cards`` says how many there are.
    """
    if cards is not None:
        n_cards = len(cards)
    count = _COUNT_WORDS.get(n_cards, str(n_cards))
    if cards is None:
        seeing = f"The {count} cards are shown in the image."
        given = "Cards: shown in the image"
    else:
        seeing = f"The {count} cards are listed below as text."
        given = "Cards: [" + ", ".join(f"'{c}'" for c in cards) + "]"
    # The letters x, y, z, w (then a, b, c, d) stand for the cards and their numbers.
    card_slots = ", ".join("xyzwuv"[i] for i in range(n_cards))
    number_slots = ", ".join("abcdef"[i] for i in range(n_cards))
    lines = [
        "[Task Description]",
        f"You are a skilled player of the {target}-points card game. {seeing} Note that "
        f"{face_rule_note(face_rule)}, and every card must be used exactly once. Your goal "
        f"is a formula that equals {target}, built from the numbers on the cards and the "
        "operators '+', '-', '*', '/', '(', ')' and '='.",
        "[Input]",
        given,
        "[Output]",
        "Reply with a valid json object in this format:",
        "{",
        f"  \"cards\": [{card_slots}], the {count} cards as they are shown ('A', '2', ..., "
        "'10', 'J', 'Q', 'K'),",
        f'  "number": [{number_slots}], the numbers the {count} cards count as,',
    ]
    if cot:
        lines.append(
            '  "thoughts": "{reason step by step about how to combine the numbers into '
            f'{target}}}",'
        )
    lines += [f'  "formula": "an equation that equals {target}"', "}"]
    return "\n".join(lines)


def general_points_expert(
    cards: Sequence[str],
    values: Sequence[int],
    solution: str,
    target: int = 24,
    cot: bool = True,
) -> str:
    """The expert's answer: the true cards and numbers and the solver's formula."""
    fields: dict = {"cards": list(cards), "number": [int(v) for v in values]}
    if cot:
        fields["thoughts"] = f"Combining {', '.join(str(int(v)) for v in values)}: {solution}."
    fields["formula"] = f"{solution}={target}"
    return _answer(fields)


VERIFIER_FAIL = "You failed this trial because "


def general_points_verifier_message(
    outcome: str,
    target: int = 24,
    value: object | None = None,
    detail: str | None = None,
) -> str:
    """The verifier's message v^ver for one GeneralPoints answer.

    ``outcome`` is a ``vlrl.cards.Verdict.outcome`` or one of the env's own classes:
    "wrong_cards" (GP-VL recognition), "no_formula", "timeout". ``detail`` refines
    "card_count": "unused" (cards left out) or "reused" (a card used twice).
    """
    if outcome == "correct":
        return f"You succeeded: your formula equals {target}."
    if outcome == "timeout":
        return "You have used up all verification steps."
    reasons = {
        "wrong_cards": "the cards you recognised are not the cards shown.",
        "no_formula": "no formula could be found in your answer.",
        "wrong_value": f"your formula does not equal {target}"
        + (f" (it equals {value})." if value is not None else "."),
        "unknown_number": "your formula uses numbers that are not on the cards.",
        "syntax_error": "your formula is not a valid equation "
        "(illegal characters or a malformed expression).",
        "division_by_zero": "your formula divides by zero.",
        "overflow": "the numbers in your formula grow too large.",
    }
    if outcome == "card_count":
        if detail == "reused":
            return VERIFIER_FAIL + "your formula uses a card more than once."
        return VERIFIER_FAIL + "your formula does not use every card exactly once."
    return VERIFIER_FAIL + reasons.get(outcome, "your formula is incorrect.")
