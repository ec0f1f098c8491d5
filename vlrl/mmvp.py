"""MMVP and MMVP-VLM (Chapter 3): visual questions on CLIP-blind pairs, for MLLMs and CLIPs.

Both benchmarks are read from a local copy of their published layout; nothing is
downloaded.

MMVP (for multimodal LLMs), :data:`MMVP_LAYOUT`: 150 pairs of images, one two-option
question per image (300 questions). Questions ``2k-1`` and ``2k`` form pair ``k``, and a
pair scores only when both of its questions are answered right. The model sees the
question, a space, then the options ("Is the door open or closed? (a) Open (b) Closed").
Answers are graded by :func:`match_option`, a deterministic matcher (rules in its
docstring), and optionally by an LLM judge behind an OpenAI-compatible endpoint
(:class:`vlrl.judge.JudgeClient`). The CSV carries no visual pattern; the per-pattern
breakdown needs labels from an extra ``Pattern``/``Type``/``Category`` column or a
``--patterns`` file.

MMVP-VLM (for CLIP-style models), :data:`MMVP_VLM_LAYOUT`: 9 visual patterns x 15 pairs.
Each statement is encoded as "a photo of <statement>"; per statement a softmax over the
pair's two images picks one; the pair counts when both statements pick their own image.

``correlate`` computes the Pearson correlation between a CLIP's per-pattern MMVP-VLM
scores and each MLLM's per-pattern MMVP scores (Appendix B.3), aligned by pattern.

CLI: ``python -m vlrl.mmvp mllm|vlm|correlate ...``; each prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vlrl.cli_options import (
    UsageError,
    add_device_options,
    add_judge_options,
    add_policy_options,
    add_progress_option,
    judge_from_args,
    policy_from_args,
    positive_int,
    silence_transformers_progress,
)
from vlrl.image_folders import IMAGE_SUFFIXES, load_rgb
from vlrl.judge import YesNoJudge, ask_all
from vlrl.label_match import LabelMatcher, normalize_text
from vlrl.reporting import pearson, print_table, tracked, write_json

__all__ = [
    "GRADES",
    "MMVP_LAYOUT",
    "MMVP_VLM_LAYOUT",
    "PATTERNS",
    "VLM_TEXT_PREFIX",
    "MMVPDataError",
    "MMVPQuestion",
    "OptionMatch",
    "PairScores",
    "VLMDecision",
    "VLMPair",
    "align_patterns",
    "canonical_pattern",
    "correlate_payloads",
    "evaluate_mllm",
    "evaluate_vlm",
    "grade",
    "main",
    "match_option",
    "mmvp_judge_question",
    "parse_options",
    "pattern_accuracies",
    "read_mmvp",
    "read_mmvp_vlm",
    "read_pattern_labels",
    "score_pairs",
    "vlm_pair_decision",
]

# ----------------------------------------------------------------------------- patterns

# The nine visual patterns in the order of the dissertation's Table 3.1, named as in its
# Appendix B.4. The MMVP-VLM release names two folders differently; those names, and short
# forms a user may write in a labels file, are aliases.
PATTERNS: tuple[str, ...] = (
    "Orientation and Direction",
    "Presence of Specific Features",
    "State and Condition",
    "Quantity and Count",
    "Positional and Relational Context",
    "Color and Appearance",
    "Structural and Physical Characteristics",
    "Text",
    "Viewpoint and Perspective",
)

_PATTERN_ALIASES: dict[str, tuple[str, ...]] = {
    "Orientation and Direction": ("orientation", "direction"),
    "Presence of Specific Features": ("presence", "specific features", "features"),
    "State and Condition": ("state", "condition"),
    "Quantity and Count": ("quantity", "count", "counting", "number"),
    "Positional and Relational Context": (
        "position",
        "positional",
        "relational context",
        "positional context",
        "spatial",
    ),
    "Color and Appearance": ("color", "colour", "colour and appearance", "appearance"),
    "Structural and Physical Characteristics": (
        "structural characteristics",
        "structural",
        "structure",
        "physical characteristics",
    ),
    "Text": ("texts", "text and symbols"),
    "Viewpoint and Perspective": ("viewpoint", "perspective"),
}


def _pattern_key(name: str) -> str:
    # "and" and "&" carry nothing: "Color & Appearance" is "Color and Appearance".
    return " ".join(word for word in normalize_text(name).split() if word != "and")


_PATTERN_LOOKUP: dict[str, str] = {}
for _canonical in PATTERNS:
    for _name in (_canonical, *_PATTERN_ALIASES[_canonical]):
        _PATTERN_LOOKUP[_pattern_key(_name)] = _canonical


def canonical_pattern(name: str) -> str:
    """The canonical name (one of :data:`PATTERNS`) of a visual pattern written any known
    way ("Texts", "structural characteristics", "Color & Appearance", "orientation")."""
    canonical = _PATTERN_LOOKUP.get(_pattern_key(str(name)))
    if canonical is None:
        raise MMVPDataError(
            f"unknown visual pattern {name!r}; known patterns: {', '.join(PATTERNS)} "
            "(case, '&' and the release's folder names 'Structural Characteristics' and "
            "'Texts' are accepted too)"
        )
    return canonical


def _pattern_at(name: str, where: str) -> str:
    try:
        return canonical_pattern(name)
    except MMVPDataError as error:
        raise MMVPDataError(f"{where}: {error}") from None


def _ordered(patterns: Iterable[str]) -> list[str]:
    order = {name: rank for rank, name in enumerate(PATTERNS)}
    return sorted(set(patterns), key=lambda name: (order.get(name, len(order)), name))


# ----------------------------------------------------------------------------- layouts


class MMVPDataError(ValueError):
    """A benchmark folder, CSV or labels file that does not follow the expected layout."""


MMVP_LAYOUT = (
    "DIR/Questions.csv with columns Index,Question,Options,Correct Answer (one row per "
    "question; Index 2k-1 and 2k form pair k; Options like '(a) Open (b) Closed'; Correct "
    "Answer like '(a)') and the images DIR/MMVP Images/<Index>.jpg (or 'MMVP Imgaes')"
)
MMVP_VLM_LAYOUT = (
    "DIR/Questions.csv with 3 columns: question id, type (the visual pattern), statement "
    "(ids 2k-1 and 2k form pair k and share one type), and the images "
    "DIR/MLLM_VLM Images/<type>/<question id>.jpg"
)

_MMVP_IMAGE_FOLDERS = ("MMVP Images", "MMVP Imgaes")
_VLM_IMAGE_FOLDERS = ("MLLM_VLM Images", "MMVP_VLM Images")
_MMVP_COLUMNS = ("Index", "Question", "Options", "Correct Answer")
_PATTERN_COLUMNS = ("pattern", "type", "category")

VLM_TEXT_PREFIX = "a photo of "


def pair_of(index: int) -> int:
    """The pair number of question ``index`` (questions 2k-1 and 2k form pair k)."""
    return (index + 1) // 2


def _read_csv_rows(path: Path, layout: str) -> list[list[str]]:
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} at {str(path)!r}; expected {layout}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise MMVPDataError(
            f"{str(path)!r} is not a readable CSV ({error}); expected {layout}"
        ) from None
    if not rows:
        raise MMVPDataError(f"{str(path)!r} is empty; expected {layout}")
    return rows


def _benchmark_folder(folder: str | Path, layout: str, what: str) -> Path:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no {what} folder at {str(root)!r}; expected {layout}")
    return root


def _image_folder(root: Path, names: Sequence[str], layout: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(
        f"no image folder {' or '.join(repr(n) for n in names)} in {str(root)!r}; expected {layout}"
    )


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in (".jpg", *(s for s in IMAGE_SUFFIXES if s != ".jpg")):
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _check_pairs(indices: Sequence[int], source: str, layout: str) -> None:
    present = set(indices)
    if len(present) != len(indices):
        duplicates = sorted(i for i, n in Counter(indices).items() if n > 1)
        raise MMVPDataError(f"{source}: duplicate ids {duplicates[:10]}; expected {layout}")
    if len(indices) % 2:
        raise MMVPDataError(
            f"{source}: {len(indices)} rows, an odd count, so some pair is incomplete; "
            f"expected {layout}"
        )
    for index in sorted(present):
        partner = index + 1 if index % 2 else index - 1
        if index < 1 or partner not in present:
            raise MMVPDataError(
                f"{source}: id {index} has no partner {partner} (pairs are ids 2k-1 and 2k, "
                f"counting from 1); expected {layout}"
            )


# ----------------------------------------------------------------------------- MMVP reader

_OPTION = re.compile(r"\(\s*([A-Za-z0-9])\s*\)\s*(.*?)\s*(?=\(\s*[A-Za-z0-9]\s*\)|$)", re.DOTALL)


def parse_options(text: str) -> dict[str, str]:
    """``"(a) Open (b) Closed"`` -> ``{"a": "Open", "b": "Closed"}`` (labels lower-cased;
    letters or digits, as in the dissertation's "(1) Closed (2) Open" ablation)."""
    options: dict[str, str] = {}
    for match in _OPTION.finditer(text.strip()):
        label = match.group(1).lower()
        if label in options:
            raise MMVPDataError(f"options {text!r} repeat the label ({label})")
        options[label] = match.group(2).strip().rstrip(",;")
    if len(options) < 2 or not all(options.values()):
        raise MMVPDataError(
            f"options {text!r} are not two or more labelled options like '(a) Open (b) Closed'"
        )
    return options


def _parse_answer(text: str, options: Mapping[str, str]) -> str | None:
    stripped = text.strip()
    match = re.fullmatch(r"\(?\s*([A-Za-z0-9])\s*\)?(?:\s+.*)?", stripped, re.DOTALL)
    if match and match.group(1).lower() in options:
        return match.group(1).lower()
    wanted = normalize_text(stripped)
    for label, option in options.items():
        if wanted and normalize_text(option) == wanted:
            return label
    return None


@dataclass(frozen=True)
class MMVPQuestion:
    """One MMVP question: its ``index`` (1-based, from the CSV), text, options by label,
    the right option's label, its image and its visual pattern (None when unlabelled)."""

    index: int
    question: str
    options_text: str
    options: dict[str, str]
    answer: str
    image: Path
    pattern: str | None = None

    @property
    def pair(self) -> int:
        return pair_of(self.index)

    @property
    def prompt(self) -> str:
        """What the model is asked: the question, a space, the options."""
        return f"{self.question} {self.options_text}"


def read_pattern_labels(path: str | Path) -> dict[int, str]:
    """Visual-pattern labels for MMVP questions, by question Index (canonical names).

    Accepted files: JSON ``{"1": "Orientation and Direction", ...}`` (Index -> pattern) or
    ``{"Orientation and Direction": [1, 2, ...], ...}`` (pattern -> Indexes); CSV with a
    header holding ``Index`` and one of ``Pattern``/``Type``/``Category``.
    """
    source = Path(path).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"no pattern-labels file at {str(source)!r}")
    expected = (
        "a JSON object {Index: pattern} or {pattern: [Index, ...]}, or a CSV with columns "
        "Index and Pattern (or Type / Category)"
    )
    labels: dict[int, str] = {}

    def add(index: object, pattern: object) -> None:
        try:
            number = int(str(index).strip())
        except ValueError:
            raise MMVPDataError(
                f"{str(source)!r}: {index!r} is not a question Index; expected {expected}"
            ) from None
        name = canonical_pattern(str(pattern))
        if labels.get(number, name) != name:
            raise MMVPDataError(
                f"{str(source)!r}: Index {number} is labelled both {labels[number]!r} and {name!r}"
            )
        labels[number] = name

    if source.suffix.lower() == ".json":
        try:
            payload = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise MMVPDataError(f"{str(source)!r} is not valid JSON ({error})") from None
        if not isinstance(payload, dict):
            raise MMVPDataError(f"{str(source)!r}: expected {expected}")
        for key, value in payload.items():
            if isinstance(value, list):
                for index in value:
                    add(index, key)
            elif isinstance(value, str):
                add(key, value)
            else:
                raise MMVPDataError(f"{str(source)!r}: entry {key!r}; expected {expected}")
    else:
        rows = _read_csv_rows(source, expected)
        header = [cell.strip().casefold() for cell in rows[0]]
        column = next((header.index(c) for c in _PATTERN_COLUMNS if c in header), None)
        if "index" not in header or column is None:
            raise MMVPDataError(
                f"{str(source)!r}: header {rows[0]} lacks Index and Pattern; expected {expected}"
            )
        for row in rows[1:]:
            if len(row) != len(header):
                raise MMVPDataError(f"{str(source)!r}: row {row} has {len(row)} cells")
            add(row[header.index("index")], row[column])
    if not labels:
        raise MMVPDataError(f"{str(source)!r} holds no labels; expected {expected}")
    return labels


def read_mmvp(folder: str | Path, patterns_file: str | Path | None = None) -> list[MMVPQuestion]:
    """Read the MMVP benchmark from ``folder`` (layout :data:`MMVP_LAYOUT`), questions in
    Index order. Pattern labels come from ``patterns_file`` when given, else from an optional
    ``Pattern``/``Type``/``Category`` column; a pair's two questions must agree, and labels
    must cover every pair or none. Missing images are reported all at once."""
    root = _benchmark_folder(folder, MMVP_LAYOUT, "MMVP")
    csv_path = root / "Questions.csv"
    rows = _read_csv_rows(csv_path, MMVP_LAYOUT)
    header = [cell.strip() for cell in rows[0]]
    folded = [cell.casefold() for cell in header]
    missing = [c for c in _MMVP_COLUMNS if c.casefold() not in folded]
    if missing:
        raise MMVPDataError(
            f"{str(csv_path)!r}: header {header} lacks {missing}; expected {MMVP_LAYOUT}"
        )
    column = {name: folded.index(name.casefold()) for name in _MMVP_COLUMNS}
    pattern_column = next((folded.index(c) for c in _PATTERN_COLUMNS if c in folded), None)
    image_dir = _image_folder(root, _MMVP_IMAGE_FOLDERS, MMVP_LAYOUT)

    file_labels = read_pattern_labels(patterns_file) if patterns_file is not None else None
    questions: list[MMVPQuestion] = []
    missing_images: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        where = f"{str(csv_path)!r} line {line}"
        if len(row) != len(header):
            raise MMVPDataError(
                f"{where}: {len(row)} cells for {len(header)} columns; expected {MMVP_LAYOUT}"
            )
        try:
            index = int(row[column["Index"]].strip())
        except ValueError:
            raise MMVPDataError(
                f"{where}: Index {row[column['Index']]!r} is not an integer"
            ) from None
        try:
            options = parse_options(row[column["Options"]])
        except MMVPDataError as error:
            raise MMVPDataError(f"{where}: {error}; expected {MMVP_LAYOUT}") from None
        answer = _parse_answer(row[column["Correct Answer"]], options)
        if answer is None:
            raise MMVPDataError(
                f"{where}: Correct Answer {row[column['Correct Answer']]!r} is none of the "
                f"options {sorted(options)}"
            )
        pattern: str | None = None
        if file_labels is not None:
            pattern = file_labels.get(index)
        elif pattern_column is not None and row[pattern_column].strip():
            pattern = _pattern_at(row[pattern_column], where)
        image = _find_image(image_dir, str(index))
        if image is None:
            missing_images.append(f"{image_dir.name}/{index}.jpg")
            image = image_dir / f"{index}.jpg"
        questions.append(
            MMVPQuestion(
                index=index,
                question=row[column["Question"]].strip(),
                options_text=row[column["Options"]].strip(),
                options=options,
                answer=answer,
                image=image,
                pattern=pattern,
            )
        )
    if not questions:
        raise MMVPDataError(f"{str(csv_path)!r} has a header but no questions")
    questions.sort(key=lambda q: q.index)
    _check_pairs([q.index for q in questions], str(csv_path), MMVP_LAYOUT)
    if missing_images:
        raise FileNotFoundError(
            f"{len(missing_images)} MMVP images missing in {str(root)!r}: "
            f"{', '.join(missing_images[:5])}{' ...' if len(missing_images) > 5 else ''}; "
            f"expected {MMVP_LAYOUT}"
        )
    if file_labels is not None:
        unknown = sorted(set(file_labels) - {q.index for q in questions})
        if unknown:
            raise MMVPDataError(
                f"pattern labels name Index {unknown[:10]} that {str(csv_path)!r} does not have"
            )
    return _spread_pair_patterns(questions)


def _spread_pair_patterns(questions: list[MMVPQuestion]) -> list[MMVPQuestion]:
    """Give both questions of a pair the pair's pattern (labelling one of them is enough)."""
    by_pair: dict[int, str] = {}
    for question in questions:
        if question.pattern is None:
            continue
        known = by_pair.setdefault(question.pair, question.pattern)
        if known != question.pattern:
            raise MMVPDataError(
                f"pair {question.pair} (questions {2 * question.pair - 1} and "
                f"{2 * question.pair}) has two patterns, {known!r} and {question.pattern!r}; "
                "both questions of a pair share one visual pattern"
            )
    pairs = {question.pair for question in questions}
    if by_pair and len(by_pair) != len(pairs):
        unlabelled = sorted(pairs - set(by_pair))
        raise MMVPDataError(
            f"pattern labels cover {len(by_pair)} of {len(pairs)} pairs; unlabelled pairs "
            f"{unlabelled[:10]}{' ...' if len(unlabelled) > 10 else ''} (label every pair or none)"
        )
    if not by_pair:
        return questions
    return [replace(q, pattern=by_pair[q.pair]) for q in questions]


# ----------------------------------------------------------------------------- option matcher

GRADES = ("correct", "wrong", "ambiguous", "no_option")

# Forms that state a choice: "Answer: (b)", "the answer is b.", "Option B", "choice 2".
# After "option"/"choice" a letter is a label ("Option B is right"); after "answer", or a
# verb, only a parenthesised one or one that ends the phrase ("the answer is a." but not
# "the answer is a closed door").
_STATED = re.compile(
    r"\b(?:option|choice)\b\s*[:#]?\s*\(?\s*([a-z0-9])\b"
    r"|\b(?:option|choice|answer)\b(?:\s+(?:is|would\s+be|will\s+be))?\s*[:\-]?\s*"
    r"(?:\(\s*([a-z0-9])\s*\)|([a-z0-9])(?=\s*(?:$|[.,;:!?)])))"
)
# The whole reply is a label ("b", "(b)", "B."); or the reply starts with one ("B. Closed").
_WHOLE = re.compile(r"^\W*([a-z0-9])\W*$")
_LEADING = re.compile(r"^\s*\(?\s*([a-z0-9])\s*(?:\)|[.:](?=\s|$))")
# A label mentioned anywhere: "(b)", "b)".
_ANYWHERE = re.compile(r"\(\s*([a-z0-9])\s*\)|(?:^|(?<=[\s:]))([a-z0-9])\)")


@dataclass(frozen=True)
class OptionMatch:
    """Which option a reply chose: ``outcome`` is ``"option"`` (``choice`` holds the label),
    ``"ambiguous"`` (several options named) or ``"no_option"``; ``found`` lists the labels
    named; ``method`` says how (``"letter"`` or ``"text"``; None when nothing was found)."""

    outcome: str
    choice: str | None
    found: tuple[str, ...]
    method: str | None


def _labels_in(pattern: re.Pattern[str], text: str, labels: Mapping[str, str]) -> list[str]:
    found = []
    for match in pattern.finditer(text):
        label = next(group for group in match.groups() if group)
        if label in labels:
            found.append(label)
    return list(dict.fromkeys(found))


def _option_matcher(options: Mapping[str, str]) -> LabelMatcher | None:
    try:
        return LabelMatcher(list(options.values()), builtin_synonyms=False)
    except ValueError:  # two options with the same words: only letters can tell them apart
        return None


def match_option(response: str, options: Mapping[str, str]) -> OptionMatch:
    """Decide which option a free-text reply chose, without any model.

    Rules, first decisive one wins:

    1. A stated label: "Answer: (b)", "The answer is b.", "Option B", "choice (2)", or a
       reply that is only a label ("b", "(B)", "B."). A bare "a" inside a sentence is an
       article, never a label.
    2. A label mentioned: in parentheses anywhere ("... so (b)"), as "b)", or leading the
       reply ("B. Closed"). An echo of the options ("(a) Open (b) Closed") names both.
    3. The option's own words (whole words, case and punctuation ignored, plurals and
       number words as in :mod:`vlrl.label_match`; the longer of two overlapping option
       texts wins): "Closed" or "The wings are closed." chooses the option "Closed".

    At any step, naming two or more options is ``"ambiguous"`` (an echo of the options, or
    "left, not right": negation is not parsed); nothing found at all is ``"no_option"``.
    """
    text = response.casefold()
    labels = {label.casefold(): option for label, option in options.items()}
    stated = _labels_in(_STATED, text, labels)
    mentioned = _labels_in(_ANYWHERE, text, labels)
    for pattern, tier in ((_WHOLE, stated), (_LEADING, mentioned)):
        start = pattern.match(text)
        if start and start.group(1) in labels and start.group(1) not in tier:
            tier.insert(0, start.group(1))
    tiers = [stated, mentioned]
    for found in tiers:
        if len(found) == 1:
            return OptionMatch("option", found[0], tuple(found), "letter")
        if found:
            return OptionMatch("ambiguous", None, tuple(found), "letter")
    matcher = _option_matcher(labels)
    if matcher is not None:
        ordered = list(labels)
        found = list(dict.fromkeys(ordered[index] for _, _, index in matcher.find(response)))
        if len(found) == 1:
            return OptionMatch("option", found[0], tuple(found), "text")
        if found:
            return OptionMatch("ambiguous", None, tuple(found), "text")
    return OptionMatch("no_option", None, (), None)


def grade(match: OptionMatch, answer: str) -> str:
    """``"correct"``/``"wrong"`` for a chosen option, else the match's outcome."""
    if match.outcome != "option":
        return match.outcome
    return "correct" if match.choice == answer.casefold() else "wrong"


def mmvp_judge_question(question: MMVPQuestion, response: str) -> str:
    """The yes/no question put to an LLM judge for one MMVP reply."""
    right = question.options[question.answer]
    return (
        "You check answers to a two-option question about an image. Reply with exactly one "
        "word, yes or no.\n"
        f"Question: {question.question}\n"
        f"Options: {question.options_text}\n"
        f"Correct option: ({question.answer}) {right}\n"
        f"Model's answer: {response}\n"
        "Does the model's answer choose the correct option (and only that one)?"
    )


# ----------------------------------------------------------------------------- pair scoring


@dataclass
class PairScores:
    """Question and pair accuracy, with the per-pattern pair accuracy when patterns are
    known (``per_pattern``: pattern -> {"pairs", "correct_pairs", "accuracy"})."""

    questions: int
    correct_questions: int
    pairs: int
    correct_pairs: int
    per_pattern: dict[str, dict[str, float]] | None = None
    pair_correct: dict[int, bool] = field(default_factory=dict)

    @property
    def question_accuracy(self) -> float:
        return self.correct_questions / self.questions if self.questions else math.nan

    @property
    def pair_accuracy(self) -> float:
        return self.correct_pairs / self.pairs if self.pairs else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "correct_questions": self.correct_questions,
            "question_accuracy": self.question_accuracy,
            "pairs": self.pairs,
            "correct_pairs": self.correct_pairs,
            "pair_accuracy": self.pair_accuracy,
            "per_pattern": self.per_pattern,
            "pair_correct": {str(pair): ok for pair, ok in sorted(self.pair_correct.items())},
        }


def _per_pattern(pair_correct: Mapping[int, bool], pair_pattern: Mapping[int, str]) -> dict:
    table: dict[str, dict[str, float]] = {}
    for pattern in _ordered(pair_pattern[pair] for pair in pair_correct):
        members = [pair for pair in pair_correct if pair_pattern[pair] == pattern]
        correct = sum(bool(pair_correct[pair]) for pair in members)
        table[pattern] = {
            "pairs": len(members),
            "correct_pairs": correct,
            "accuracy": correct / len(members),
        }
    return table


def score_pairs(
    correct: Mapping[int, bool], pair_patterns: Mapping[int, str] | None = None
) -> PairScores:
    """Score questions by Index (``correct[index]``): a pair (questions 2k-1, 2k) scores only
    when both are right. ``pair_patterns`` (pair number -> pattern) adds the per-pattern
    pair accuracy; every pair needs a pattern then."""
    _check_pairs(list(correct), "scored questions", "both questions of every pair")
    pair_correct: dict[int, bool] = {}
    for index in sorted(correct):
        pair = pair_of(index)
        pair_correct[pair] = pair_correct.get(pair, True) and bool(correct[index])
    per_pattern = None
    if pair_patterns is not None:
        unlabelled = sorted(set(pair_correct) - set(pair_patterns))
        if unlabelled:
            raise MMVPDataError(f"pairs {unlabelled[:10]} have no pattern")
        per_pattern = _per_pattern(pair_correct, pair_patterns)
    return PairScores(
        questions=len(correct),
        correct_questions=sum(bool(v) for v in correct.values()),
        pairs=len(pair_correct),
        correct_pairs=sum(pair_correct.values()),
        per_pattern=per_pattern,
        pair_correct=pair_correct,
    )


# ----------------------------------------------------------------------------- MMVP-VLM


@dataclass(frozen=True)
class VLMPair:
    """One MMVP-VLM pair: ``ids`` (2k-1, 2k), the pattern, and per id its statement and
    image (the odd id's statement describes the first image, the even id's the second)."""

    pair: int
    pattern: str
    ids: tuple[int, int]
    statements: tuple[str, str]
    images: tuple[Path, Path]


def read_mmvp_vlm(folder: str | Path) -> list[VLMPair]:
    """Read MMVP-VLM from ``folder`` (layout :data:`MMVP_VLM_LAYOUT`), pairs in id order."""
    root = _benchmark_folder(folder, MMVP_VLM_LAYOUT, "MMVP-VLM")
    csv_path = root / "Questions.csv"
    rows = _read_csv_rows(csv_path, MMVP_VLM_LAYOUT)
    if rows and not rows[0][0].strip().isdigit():
        rows = rows[1:]  # a header row
    image_dir = _image_folder(root, _VLM_IMAGE_FOLDERS, MMVP_VLM_LAYOUT)
    pattern_dirs = {
        canonical: path
        for path in sorted(p for p in image_dir.iterdir() if p.is_dir())
        if (canonical := _PATTERN_LOOKUP.get(_pattern_key(path.name)))
    }
    entries: dict[int, tuple[str, str, Path]] = {}
    order: list[int] = []
    missing_images: list[str] = []
    for number, row in enumerate(rows, start=1):
        where = f"{str(csv_path)!r} row {number}"
        if len(row) != 3:
            raise MMVPDataError(f"{where}: {len(row)} cells, not 3; expected {MMVP_VLM_LAYOUT}")
        raw_id, raw_type, statement = (cell.strip() for cell in row)
        try:
            qid = int(raw_id)
        except ValueError:
            raise MMVPDataError(
                f"{where}: question id {raw_id!r} is not an integer; expected {MMVP_VLM_LAYOUT}"
            ) from None
        pattern = _pattern_at(raw_type, where)
        if not statement:
            raise MMVPDataError(f"{where}: empty statement")
        type_dir = image_dir / raw_type
        if not type_dir.is_dir():
            type_dir = pattern_dirs.get(pattern, type_dir)
        image = _find_image(type_dir, str(qid))
        if image is None:
            missing_images.append(f"{image_dir.name}/{raw_type}/{qid}.jpg")
            image = type_dir / f"{qid}.jpg"
        order.append(qid)
        entries[qid] = (pattern, statement, image)
    if not order:
        raise MMVPDataError(f"{str(csv_path)!r} has no rows; expected {MMVP_VLM_LAYOUT}")
    _check_pairs(order, str(csv_path), MMVP_VLM_LAYOUT)
    pairs: list[VLMPair] = []
    for first in sorted(qid for qid in entries if qid % 2):
        second = first + 1
        if entries[first][0] != entries[second][0]:
            raise MMVPDataError(
                f"{str(csv_path)!r}: pair ({first}, {second}) has two patterns, "
                f"{entries[first][0]!r} and {entries[second][0]!r}; expected {MMVP_VLM_LAYOUT}"
            )
        pairs.append(
            VLMPair(
                pair=pair_of(first),
                pattern=entries[first][0],
                ids=(first, second),
                statements=(entries[first][1], entries[second][1]),
                images=(entries[first][2], entries[second][2]),
            )
        )
    if missing_images:
        raise FileNotFoundError(
            f"{len(missing_images)} MMVP-VLM images missing in {str(root)!r}: "
            f"{', '.join(missing_images[:5])}{' ...' if len(missing_images) > 5 else ''}; "
            f"expected {MMVP_VLM_LAYOUT}"
        )
    return pairs


@dataclass(frozen=True)
class VLMDecision:
    """One pair's outcome: ``probabilities[i][j]`` is statement i's softmax weight on image j,
    ``picks[i]`` the image statement i chose (None on an exact tie), ``correct`` when both
    statements chose their own image."""

    probabilities: tuple[tuple[float, float], tuple[float, float]]
    picks: tuple[int | None, int | None]
    correct: bool


def vlm_pair_decision(similarity: Any, logit_scale: float = 1.0) -> VLMDecision:
    """Decide one MMVP-VLM pair from its 2x2 similarity matrix (row: statement, column:
    image; statement 0 describes image 0). Each statement's softmax over the two images
    (logits ``logit_scale * similarity``) picks the image with the larger weight; a tie
    picks neither, so it cannot score."""
    matrix = np.asarray(similarity, dtype=np.float64)
    if matrix.shape != (2, 2) or not np.isfinite(matrix).all():
        raise ValueError(f"a pair needs a finite 2x2 similarity matrix, got {matrix.tolist()!r}")
    logits = float(logit_scale) * matrix
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    probabilities = weights / weights.sum(axis=1, keepdims=True)
    picks: list[int | None] = []
    for row in probabilities:
        picks.append(None if row[0] == row[1] else int(np.argmax(row)))
    rows = tuple((float(r[0]), float(r[1])) for r in probabilities)
    return VLMDecision(rows, (picks[0], picks[1]), picks == [0, 1])  # type: ignore[arg-type]


class _ImageTextEncoder(Protocol):
    name: str
    logit_scale: float

    def encode_images(self, images: Sequence[np.ndarray], batch_size: int = 32) -> Any: ...

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> Any: ...


def evaluate_vlm(
    pairs: Sequence[VLMPair],
    encoder: _ImageTextEncoder,
    batch_size: int = 32,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Run MMVP-VLM with a CLIP-style encoder: embeddings for every image and every
    "a photo of <statement>", then :func:`vlm_pair_decision` per pair. Returns the JSON
    payload (per-pattern pair accuracy, their average, per-pair records)."""
    if not pairs:
        raise MMVPDataError("no MMVP-VLM pairs to evaluate")
    paths = [path for pair in pairs for path in pair.images]
    texts = [VLM_TEXT_PREFIX + statement for pair in pairs for statement in pair.statements]
    image_embeddings = []
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    for chunk in tracked(chunks, "MMVP-VLM images", show_progress):
        images = [load_rgb(path) for path in chunk]
        image_embeddings.append(_as_numpy(encoder.encode_images(images, batch_size=batch_size)))
    image_matrix = np.concatenate(image_embeddings)
    text_matrix = _as_numpy(encoder.encode_texts(texts, batch_size=batch_size))
    scale = float(encoder.logit_scale)
    records, pair_correct, pair_pattern = [], {}, {}
    for number, pair in enumerate(pairs):
        rows = slice(2 * number, 2 * number + 2)
        similarity = text_matrix[rows] @ image_matrix[rows].T
        decision = vlm_pair_decision(similarity, scale)
        pair_correct[pair.pair] = decision.correct
        pair_pattern[pair.pair] = pair.pattern
        records.append(
            {
                "pair": pair.pair,
                "pattern": pair.pattern,
                "ids": list(pair.ids),
                "statements": list(pair.statements),
                "images": [str(path) for path in pair.images],
                "similarity": similarity.tolist(),
                "probabilities": [list(row) for row in decision.probabilities],
                "picks": list(decision.picks),
                "correct": decision.correct,
            }
        )
    per_pattern = _per_pattern(pair_correct, pair_pattern)
    correct = sum(pair_correct.values())
    return {
        "kind": "mmvp_vlm",
        "model": encoder.name,
        "logit_scale": scale,
        "pairs": len(pairs),
        "correct_pairs": correct,
        "pair_accuracy": correct / len(pairs),
        # Table 3.1's "MMVP Average": the mean of the per-pattern scores.
        "average": float(np.mean([entry["accuracy"] for entry in per_pattern.values()])),
        "per_pattern": per_pattern,
        "records": records,
    }


def _as_numpy(embeddings: Any) -> np.ndarray:
    if hasattr(embeddings, "detach"):
        embeddings = embeddings.detach().float().cpu().numpy()
    return np.asarray(embeddings, dtype=np.float64)


# ----------------------------------------------------------------------------- MMVP (MLLM)


class _Policy(Protocol):
    def generate(self, images: Sequence[np.ndarray], prompts: Sequence[str], **kwargs) -> Any: ...


def evaluate_mllm(
    questions: Sequence[MMVPQuestion],
    policy: _Policy,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    judge: YesNoJudge | None = None,
    judge_workers: int = 1,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Ask ``policy`` every question (batched) and score the replies with
    :func:`match_option`, and with ``judge`` when given (``judge_workers`` requests at
    once, :func:`vlrl.judge.ask_all`). Returns the JSON payload: per
    scorer the question, pair and per-pattern pair accuracy; per question its record."""
    if not questions:
        raise MMVPDataError("no MMVP questions to evaluate")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    responses: list[str] = []
    batches = [questions[i : i + batch_size] for i in range(0, len(questions), batch_size)]
    for number, batch in enumerate(tracked(batches, "MMVP questions", show_progress)):
        generation = policy.generate(
            [load_rgb(q.image) for q in batch],
            [q.prompt for q in batch],
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            seed=seed + number,
        )
        responses.extend(generation.texts)

    records = []
    for question, response in zip(questions, responses, strict=True):
        match = match_option(response, question.options)
        record = {
            "index": question.index,
            "pair": question.pair,
            "pattern": question.pattern,
            "image": str(question.image),
            "prompt": question.prompt,
            "answer": question.answer,
            "response": response,
            "choice": match.choice,
            "options_found": list(match.found),
            "method": match.method,
            "grade": grade(match, question.answer),
        }
        record["correct"] = record["grade"] == "correct"
        records.append(record)
    if judge is not None:
        verdicts = ask_all(
            judge,
            [mmvp_judge_question(q, r) for q, r in zip(questions, responses, strict=True)],
            judge_workers,
        )
        for record, verdict in zip(records, verdicts, strict=True):
            record["judge"] = verdict
    return mllm_payload(records, judged=judge is not None)


def mllm_payload(records: Sequence[Mapping[str, Any]], judged: bool = False) -> dict[str, Any]:
    """Scores from per-question records (``index``, ``pattern``, ``grade``, ``correct`` and,
    when ``judged``, ``judge``: True/False/None); the matcher's scores always, the judge's
    (None counted as wrong and as ``unclear``) when judged."""
    pair_patterns = None
    if records and all(r["pattern"] is not None for r in records):
        pair_patterns = {pair_of(r["index"]): r["pattern"] for r in records}
    match_scores = score_pairs({r["index"]: r["correct"] for r in records}, pair_patterns)
    scores = {"match": {**match_scores.to_dict(), "grades": _grade_counts(records)}}
    if judged:
        judge_scores = score_pairs({r["index"]: r["judge"] is True for r in records}, pair_patterns)
        scores["judge"] = {
            **judge_scores.to_dict(),
            "unclear": sum(r["judge"] is None for r in records),
        }
    return {
        "kind": "mmvp_mllm",
        "primary_scorer": "judge" if judged else "match",
        "patterns_labelled": pair_patterns is not None,
        "scores": scores,
        "records": list(records),
    }


def _grade_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = Counter(r["grade"] for r in records)
    return {name: counts.get(name, 0) for name in GRADES}


# ----------------------------------------------------------------------------- correlation


def pattern_accuracies(payload: Mapping[str, Any], scorer: str | None = None) -> dict[str, float]:
    """Per-pattern pair accuracy (canonical pattern -> accuracy) from an ``mllm`` or ``vlm``
    JSON payload; for ``mllm`` the ``scorer``'s scores (default: the payload's primary)."""
    kind = payload.get("kind")
    if kind == "mmvp_vlm":
        table = payload.get("per_pattern")
    elif kind == "mmvp_mllm":
        name = scorer or payload.get("primary_scorer", "match")
        if name not in payload.get("scores", {}):
            raise MMVPDataError(f"this MMVP result has no {name!r} scores")
        table = payload["scores"][name].get("per_pattern")
    else:
        raise MMVPDataError(
            f"not an MMVP result (kind {kind!r}); pass JSON written by `python -m vlrl.mmvp`"
        )
    if not table:
        raise MMVPDataError(
            "this MMVP result has no per-pattern scores (run `mllm` with pattern labels: a "
            "Pattern column or --patterns FILE)"
        )
    return {canonical_pattern(name): float(entry["accuracy"]) for name, entry in table.items()}


def align_patterns(
    first: Mapping[str, float], second: Mapping[str, float]
) -> tuple[list[str], list[float], list[float], dict[str, list[str]]]:
    """The patterns both sides score (canonical order) with their values, and per side the
    patterns only it has (``{"only_first": [...], "only_second": [...]}``)."""
    left = {canonical_pattern(k): v for k, v in first.items()}
    right = {canonical_pattern(k): v for k, v in second.items()}
    shared = _ordered(set(left) & set(right))
    left_out = {
        "only_first": _ordered(set(left) - set(right)),
        "only_second": _ordered(set(right) - set(left)),
    }
    return shared, [left[p] for p in shared], [right[p] for p in shared], left_out


def correlate_payloads(
    vlm: Mapping[str, Any],
    mllms: Sequence[tuple[str, Mapping[str, Any]]],
    scorer: str | None = None,
) -> dict[str, Any]:
    """Pearson correlation between the CLIP's per-pattern MMVP-VLM scores and each MLLM's
    per-pattern MMVP scores (Appendix B.3). Patterns only one side has are left out and
    listed; fewer than 2 shared patterns is an error."""
    if vlm.get("kind") != "mmvp_vlm":
        raise MMVPDataError(
            "the first file must be an MMVP-VLM result (`python -m vlrl.mmvp vlm`), got kind "
            f"{vlm.get('kind')!r}"
        )
    clip = pattern_accuracies(vlm)
    results = []
    for name, payload in mllms:
        if payload.get("kind") != "mmvp_mllm":
            raise MMVPDataError(
                f"{name}: not an MMVP (MLLM) result (`python -m vlrl.mmvp mllm`), got kind "
                f"{payload.get('kind')!r}"
            )
        try:
            scores = pattern_accuracies(payload, scorer)
        except MMVPDataError as error:
            raise MMVPDataError(f"{name}: {error}") from None
        shared, clip_values, mllm_values, left_out = align_patterns(clip, scores)
        if len(shared) < 2:
            raise MMVPDataError(
                f"{name}: only {len(shared)} pattern(s) scored on both sides "
                f"({', '.join(shared) or 'none'}); a correlation needs at least 2"
            )
        results.append(
            {
                "name": name,
                "model": payload.get("model"),
                "pearson": pearson(clip_values, mllm_values),
                "patterns": shared,
                "clip": clip_values,
                "mllm": mllm_values,
                "left_out_clip_only": left_out["only_first"],
                "left_out_mllm_only": left_out["only_second"],
            }
        )
    return {"kind": "mmvp_correlation", "clip_model": vlm.get("model"), "results": results}


# ----------------------------------------------------------------------------- CLI


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _run_mllm(args: argparse.Namespace) -> dict[str, Any]:
    questions = read_mmvp(args.data, args.patterns)
    if args.limit is not None:
        questions = questions[: 2 * args.limit]
    judge = judge_from_args(args)
    policy = policy_from_args(args)
    payload = evaluate_mllm(
        questions,
        policy,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        judge=judge,
        judge_workers=args.judge_workers,
        show_progress=not args.no_progress,
    )
    payload = {
        "kind": payload["kind"],
        "model": args.model,
        "data": str(Path(args.data).expanduser()),
        "settings": {
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "seed": args.seed,
            "limit": args.limit,
            "dtype": args.dtype,
            "device": args.device,
            "judge_model": args.judge_model if judge else None,
        },
        **{k: v for k, v in payload.items() if k != "kind"},
    }
    if judge is not None:
        payload["judge_counts"] = judge.counts()
    _print_mllm(payload)
    return payload


def _print_mllm(payload: Mapping[str, Any]) -> None:
    scores = payload["scores"]
    rows = []
    for name, entry in scores.items():
        rows.append(
            [
                name,
                entry["questions"],
                entry["correct_questions"],
                _percent(entry["question_accuracy"]),
                entry["pairs"],
                entry["correct_pairs"],
                _percent(entry["pair_accuracy"]),
            ]
        )
    print_table(
        f"MMVP: {payload.get('model')}",
        [
            "scorer",
            "questions",
            "correct",
            "question acc. (%)",
            "pairs",
            "correct",
            "pair acc. (%)",
        ],
        rows,
    )
    grades = scores["match"]["grades"]
    print_table("MMVP: option matcher outcomes", list(grades), [list(grades.values())])
    if "judge" in scores:
        counts = payload.get("judge_counts", {})
        print(
            f"judge: {scores['judge']['unclear']} of {scores['judge']['questions']} verdicts "
            f"unclear (counted wrong); {counts.get('failed', 0)} requests failed"
            + (f" (last error: {counts['last_error']})" if counts.get("last_error") else "")
        )
    if not payload["patterns_labelled"]:
        print(
            "no pattern labels given (no Pattern/Type/Category column, no --patterns FILE): "
            "per-pattern scores skipped"
        )
        return
    names = list(scores)
    patterns = list(scores["match"]["per_pattern"])
    rows = []
    for pattern in patterns:
        row: list[object] = [pattern, scores["match"]["per_pattern"][pattern]["pairs"]]
        for name in names:
            entry = scores[name]["per_pattern"][pattern]
            row += [entry["correct_pairs"], _percent(entry["accuracy"])]
        rows.append(row)
    columns = ["pattern", "pairs"]
    for name in names:
        columns += [f"{name}: correct", f"{name}: pair acc. (%)"]
    print_table("MMVP: pair accuracy per visual pattern", columns, rows)


def _run_vlm(args: argparse.Namespace) -> dict[str, Any]:
    pairs = read_mmvp_vlm(args.data)
    if args.limit is not None:
        pairs = pairs[: args.limit]
    from vlrl.encoders import ImageTextEncoder

    try:
        encoder = ImageTextEncoder.load(args.clip, device=args.device, dtype=args.dtype)
    except ValueError as error:  # a folder holding some other kind of model
        raise MMVPDataError(f"--clip {args.clip}: {error}") from None
    payload = evaluate_vlm(
        pairs, encoder, batch_size=args.batch_size, show_progress=not args.no_progress
    )
    payload["clip"] = str(Path(args.clip).expanduser())
    payload["data"] = str(Path(args.data).expanduser())
    rows = [
        [pattern, entry["pairs"], entry["correct_pairs"], _percent(entry["accuracy"])]
        for pattern, entry in payload["per_pattern"].items()
    ]
    rows.append(
        [
            "average over patterns",
            payload["pairs"],
            payload["correct_pairs"],
            _percent(payload["average"]),
        ]
    )
    print_table(
        f"MMVP-VLM: {payload['model']}", ["pattern", "pairs", "correct", "pair acc. (%)"], rows
    )
    return payload


def _run_correlate(args: argparse.Namespace) -> dict[str, Any]:
    def load(path: str) -> dict[str, Any]:
        source = Path(path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"no result file at {str(source)!r}")
        try:
            return json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise MMVPDataError(f"{str(source)!r} is not valid JSON ({error})") from None

    payload = correlate_payloads(
        load(args.vlm_json), [(path, load(path)) for path in args.mllm_json], args.scorer
    )
    rows = []
    for result in payload["results"]:
        left_out = result["left_out_clip_only"] + result["left_out_mllm_only"]
        rows.append(
            [
                result["name"],
                len(result["patterns"]),
                "n/a (no spread)" if math.isnan(result["pearson"]) else result["pearson"],
                ", ".join(left_out) or "-",
            ]
        )
        if left_out:
            print(
                f"{result['name']}: left out {', '.join(left_out)} (scored on one side only)",
                file=sys.stderr,
            )
    print_table(
        f"Pearson correlation with {payload['clip_model']} per visual pattern",
        ["MLLM result", "patterns", "pearson r", "left out"],
        rows,
    )
    return payload


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vlrl.mmvp",
        description="MMVP (MLLMs), MMVP-VLM (CLIP-style models) and their per-pattern "
        "correlation, from local copies of the benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    mllm = commands.add_parser("mllm", help="MMVP: ask a policy the 300 questions")
    mllm.add_argument("--data", required=True, help=f"MMVP folder: {MMVP_LAYOUT}")
    # Replies may explain their choice before naming it, so they get more tokens than EMT's
    # one-label answers; MMVP's photos make long image-token sequences, so smaller batches.
    add_policy_options(mllm, model_default=None, batch_size=8, max_new_tokens=64)
    mllm.add_argument("--patterns", help="pattern labels (CSV or JSON, Index -> pattern)")
    mllm.add_argument("--limit", type=positive_int, help="only the first N pairs")
    add_judge_options(mllm)
    add_progress_option(mllm)

    vlm = commands.add_parser("vlm", help="MMVP-VLM: text-to-image matching with a CLIP")
    vlm.add_argument("--data", required=True, help=f"MMVP-VLM folder: {MMVP_VLM_LAYOUT}")
    vlm.add_argument("--clip", required=True, help="a local CLIP-style model folder")
    vlm.add_argument("--batch-size", type=positive_int, default=32)
    vlm.add_argument("--limit", type=positive_int, help="only the first N pairs")
    add_device_options(vlm)
    add_progress_option(vlm)

    correlate = commands.add_parser(
        "correlate", help="Pearson correlation of per-pattern CLIP and MLLM scores"
    )
    correlate.add_argument("vlm_json", help="JSON written by `vlm`")
    correlate.add_argument("mllm_json", nargs="+", help="JSON written by `mllm` (one or more)")
    correlate.add_argument(
        "--scorer", choices=["match", "judge"], help="MLLM scores to use (default: judge if run)"
    )

    for sub in (mllm, vlm, correlate):
        sub.add_argument("--out", default=None, help="JSON output path")
    return parser


_DEFAULT_OUT = {"mllm": "mmvp_mllm.json", "vlm": "mmvp_vlm.json", "correlate": "mmvp_corr.json"}


def main(argv: list[str] | None = None) -> int:
    """``python -m vlrl.mmvp mllm|vlm|correlate``; returns the exit status (2 on bad input)."""
    args = _parser().parse_args(argv)
    silence_transformers_progress()
    runners = {"mllm": _run_mllm, "vlm": _run_vlm, "correlate": _run_correlate}
    try:
        payload = runners[args.command](args)
    except (FileNotFoundError, MMVPDataError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = write_json(args.out or _DEFAULT_OUT[args.command], payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
