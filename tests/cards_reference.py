"""Pure-Python reference for the card core, written independently of csrc/.

Used as the oracle of the differential tests (hypothesis fuzzing of the verifier, the
solver on small hands) and as the baseline of bench/cards.py. Arithmetic is
``fractions.Fraction``; int64 limits are imitated explicitly so that "overflow" means
the same thing as in the C++ core: every literal and every intermediate result, once
reduced, must have numerator and denominator strictly inside (-2**63, 2**63).
"""

from __future__ import annotations

import itertools
import sys
from fractions import Fraction

OUTCOMES = (
    "correct",
    "wrong_value",
    "unknown_number",
    "card_count",
    "syntax_error",
    "division_by_zero",
    "overflow",
)
MAX_DEPTH = 1000
_LIMIT = 2**63


class _SyntaxError(Exception):
    pass


# Evaluation states ranked like the core: a division by zero anywhere outranks an
# overflow anywhere.
_OK, _OVERFLOW, _DIV_ZERO = 0, 1, 2


def _fits(value: Fraction) -> bool:
    return -_LIMIT < value.numerator < _LIMIT and value.denominator < _LIMIT


def _tokenize(text: str) -> list[tuple[str, int | None]] | None:
    tokens: list[tuple[str, int | None]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\n\r":
            i += 1
        elif "0" <= ch <= "9":
            j = i
            while j < len(text) and "0" <= text[j] <= "9":
                j += 1
            # Digit runs are converted piecewise: int() refuses > 4300 digits.
            digits = text[i:j].lstrip("0") or "0"
            tokens.append(("num", int(digits) if len(digits) <= 20 else _LIMIT))
            i = j
        elif ch in "+-*/()=":
            tokens.append((ch, None))
            i += 1
        else:
            return None
    tokens.append(("end", None))
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, int | None]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str:
        return self.tokens[self.pos][0]

    def formula(self) -> tuple[int, Fraction | None]:
        result = self.expr(0)
        if self.peek() == "=":
            self.pos += 1
            if self.peek() == "num":
                self.pos += 1
        if self.peek() != "end":
            raise _SyntaxError
        return result

    def expr(self, depth: int) -> tuple[int, Fraction | None]:
        left = self.term(depth)
        while self.peek() in "+-":
            op = self.peek()
            self.pos += 1
            left = _combine(left, self.term(depth), op)
        return left

    def term(self, depth: int) -> tuple[int, Fraction | None]:
        left = self.factor(depth)
        while self.peek() in "*/":
            op = self.peek()
            self.pos += 1
            left = _combine(left, self.factor(depth), op)
        return left

    def factor(self, depth: int) -> tuple[int, Fraction | None]:
        kind, value = self.tokens[self.pos]
        if kind == "num":
            self.pos += 1
            assert value is not None
            if value >= _LIMIT:
                return (_OVERFLOW, None)
            return (_OK, Fraction(value))
        if kind == "(":
            if depth + 1 > MAX_DEPTH:
                raise _SyntaxError
            self.pos += 1
            inner = self.expr(depth + 1)
            if self.peek() != ")":
                raise _SyntaxError
            self.pos += 1
            return inner
        raise _SyntaxError


def _combine(
    left: tuple[int, Fraction | None], right: tuple[int, Fraction | None], op: str
) -> tuple[int, Fraction | None]:
    worst = max(left[0], right[0])
    if worst != _OK:
        return (worst, None)
    a, b = left[1], right[1]
    assert a is not None and b is not None
    if op == "+":
        out = a + b
    elif op == "-":
        out = a - b
    elif op == "*":
        out = a * b
    else:
        if b == 0:
            return (_DIV_ZERO, None)
        out = a / b
    return (_OK, out) if _fits(out) else (_OVERFLOW, None)


def reference_verify(
    formula: str, values: list[int], target: int
) -> tuple[str, Fraction | None, tuple[int, ...]]:
    """(outcome, value, numbers) with the rules and precedence of vlrl.cards.verify."""
    tokens = _tokenize(formula)
    if tokens is None:
        return ("syntax_error", None, ())
    end = next((k for k, (kind, _) in enumerate(tokens) if kind == "="), len(tokens))
    literals = [v for kind, v in tokens[:end] if kind == "num"]
    numbers: tuple[int, ...] = (
        () if any(v >= _LIMIT for v in literals) else tuple(literals)  # type: ignore[operator]
    )
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 4 * MAX_DEPTH + 200))
    try:
        status, value = _Parser(tokens).formula()
    except _SyntaxError:
        return ("syntax_error", None, numbers)
    finally:
        sys.setrecursionlimit(old_limit)
    if status == _DIV_ZERO:
        return ("division_by_zero", None, numbers)
    if status == _OVERFLOW:
        return ("overflow", None, numbers)
    if any(n not in values for n in numbers):
        return ("unknown_number", value, numbers)
    if sorted(numbers) != sorted(values):
        return ("card_count", value, numbers)
    return ("correct" if value == target else "wrong_value", value, numbers)


def reference_solvable(values: list[int], target: int) -> bool:
    """Brute force over every pairwise combination in Fraction arithmetic."""

    def search(items: tuple[Fraction, ...]) -> bool:
        if len(items) == 1:
            return items[0] == target
        for i, j in itertools.combinations(range(len(items)), 2):
            a, b = items[i], items[j]
            rest = tuple(x for k, x in enumerate(items) if k not in (i, j))
            results = [a + b, a - b, b - a, a * b]
            if b != 0:
                results.append(a / b)
            if a != 0:
                results.append(b / a)
            if any(search((*rest, r)) for r in results):
                return True
        return False

    return search(tuple(Fraction(v) for v in values))
