"""Post-processing f for V-IRL answers, and the verifier's observation check.

A V-IRL answer is a JSON object with "current observation", "current instruction" and
"action" (the last two are what the CoT prompt asks for; the plain prompt asks only for
"action"). f reads the last JSON object that has an "action"; when none decodes (broken
JSON, prose around it), regular expressions read the last quoted or bare value of each
key. The action is then normalised (case, spaces, quotes, a bare "forward" or "stop"
gains its parentheses) and must be one of the action space's strings exactly.

Nothing here raises on any text: the inputs are model outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vlrl.envs.parsing import json_objects_from_end, text_tail

from .routes import COMPASS, FORWARD, RELATIVE_TURNS, STOP, turn_action


@dataclass(frozen=True)
class NavigationAnswer:
    """What f read from a V-IRL answer.

    ``action`` is the normalised action text (possibly outside the action space) or
    None when the answer has none; ``observation`` the "current observation" text or
    None when absent; ``used_fallback`` is True when no JSON object with an action
    decoded and regular expressions were used (or nothing was found).
    """

    action: str | None
    observation: str | None
    instruction: str | None
    used_fallback: bool


def action_strings(action_space: str) -> list[str]:
    """Every valid action text of the "absolute" or "relative" action space."""
    targets = COMPASS if action_space == "absolute" else RELATIVE_TURNS
    return [turn_action(t) for t in targets] + [FORWARD, STOP]


_TURN = re.compile(r"^turn[_ ]?direction\s*\(\s*(.*?)\s*\)$")


def normalize_action(value: object) -> str | None:
    """Canonical spelling of an action text, or None when it is not action-shaped."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.strip().strip("`'\" ").lower().split())
    if text in ("forward", "forward()", "forward ()"):
        return FORWARD
    if text in ("stop", "stop()", "stop ()"):
        return STOP
    match = _TURN.match(text)
    if match is None:
        return text or None
    target = " ".join(match.group(1).strip("'\" ").replace("_", " ").split())
    return turn_action(target)


def _field_patterns(key: str) -> tuple[re.Pattern, re.Pattern]:
    quoted = re.compile(rf"""["']?{key}["']?\s*:\s*(?:"([^"\n]*)"|'([^'\n]*)')""", re.IGNORECASE)
    bare = re.compile(
        rf"""["']?{key}["']?\s*:\s*([^\s"'{{}},][^\n"'{{}},]*(?:\([^)\n]*\))?)""", re.IGNORECASE
    )
    return quoted, bare


_PATTERNS = {
    key: _field_patterns(key.replace(" ", r"[ _]"))
    for key in ("action", "current observation", "current instruction")
}


def _regex_field(text: str, key: str) -> str | None:
    best: tuple[int, str] | None = None
    for pattern in _PATTERNS[key]:
        for match in pattern.finditer(text):
            value = next((g for g in match.groups() if g is not None), "")
            if best is None or match.start() >= best[0]:
                best = (match.start(), value)
    return None if best is None else best[1].strip()


def parse_navigation_answer(text: object) -> NavigationAnswer:
    """Read a V-IRL answer (observation, instruction, action) from model text. Never raises."""
    try:
        tail = text_tail(text)
        for mapping in json_objects_from_end(tail):
            fields = {
                " ".join(str(k).lower().replace("_", " ").split()): v for k, v in mapping.items()
            }
            if "action" not in fields:
                continue
            observation = fields.get("current observation")
            instruction = fields.get("current instruction")
            return NavigationAnswer(
                action=normalize_action(fields["action"]),
                observation=None if observation is None else str(observation),
                instruction=None if instruction is None else str(instruction),
                used_fallback=False,
            )
        return NavigationAnswer(
            action=normalize_action(_regex_field(tail, "action")),
            observation=_regex_field(tail, "current observation"),
            instruction=_regex_field(tail, "current instruction"),
            used_fallback=True,
        )
    except Exception:
        return NavigationAnswer(None, None, None, used_fallback=True)


_NEGATED_INTERSECTION = re.compile(
    r"\b(no|not|without|never|n't)\b[^;.]{0,40}\bintersections?\b", re.IGNORECASE
)
_INTERSECTION = re.compile(r"\bintersections?\b", re.IGNORECASE)


def mentioned_landmarks(claim: str, names: Iterable[str]) -> set[str]:
    """Which of ``names`` the text mentions (case-insensitive; a longer name wins)."""
    lowered = claim.lower()
    found = set()
    for name in sorted(set(names), key=len, reverse=True):
        key = name.lower()
        if key and key in lowered:
            found.add(name)
            lowered = lowered.replace(key, " ")
    return found


def observation_misstated(
    claim: str, visible: Iterable[str], intersection: bool, names: Iterable[str]
) -> bool:
    """Whether a "current observation" misstates what is at the point.

    It must name exactly the landmarks visible there (among the landmark names the
    route and city know) and state an intersection exactly when there is one. Sides
    are not checked: wording varies ("my right" vs "your right").
    """
    try:
        claimed_names = mentioned_landmarks(claim, names)
        claims_intersection = bool(
            _INTERSECTION.search(claim)
        ) and not _NEGATED_INTERSECTION.search(claim)
        return claimed_names != set(visible) or claims_intersection != bool(intersection)
    except Exception:
        return True
