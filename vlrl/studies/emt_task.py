"""The EMT task inside a study (SPEC section 2.5, carried into Part II): does post-training
make a model forget how to classify images?

One dataset (the built-in ``sklearn-digits``, or any dataset :func:`vlrl.suites.emt.open_dataset`
reads) is split once, by class, into a training part and a held-out part
(:func:`emt_split`: a seeded :data:`HOLDOUT_SHARE` of every class, the same split whatever
the image size, the study or its seed). The foundation mixture may include the EMT task on
the training part (:func:`emt_examples`), so that a tiny random-weight base can answer it
at all; every evaluated checkpoint is then asked the EMT question on the held-out part
(:func:`emt_accuracy`), which no stage ever trains on.

The question is EMT's own (:func:`vlrl.suites.emt.emt_prompt`) and the answers are scored
by EMT's label matching (:func:`vlrl.suites.emt.run_emt`); the training answer is the bare
label ("3"), the fewest tokens a tiny model has to learn, which the label matcher reads as
that label. Evaluation is greedy: the question has one right answer and the accuracy
should measure what the policy knows, not sampling noise; its binomial s.e. is then over
the held-out images only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vlrl.config import ConfigError
from vlrl.suites.emt import EmtDataset, open_dataset, run_emt
from vlrl.suites.image_folders import load_rgb
from vlrl.training.expert_data import SFTExample

# The held-out share of every class, and the seed of the split. Fixed on purpose: the split
# is what keeps the foundation's EMT examples off the evaluated images, so no spec can move it.
HOLDOUT_SHARE = 0.3
SPLIT_SEED = 0
SHOWN_OUTPUTS = 8  # answers kept in each evaluation file, to read what the policy writes


@dataclass(frozen=True)
class EmtSplit:
    """One dataset's training part and held-out part (same classes, disjoint images)."""

    train: EmtDataset
    heldout: EmtDataset


def _subset(dataset: EmtDataset, indices: list[int]) -> EmtDataset:
    samples = [dataset.folder.samples[i] for i in indices]
    return EmtDataset(dataset.name, replace(dataset.folder, samples=samples), dataset.labels)


def emt_split(source: str, image_size: int, cache: Path | None = None) -> EmtSplit:
    """The split of ``source`` (``"sklearn-digits"``, exported at ``image_size`` pixels, or
    a dataset folder): per class, a seeded :data:`HOLDOUT_SHARE` (at least one image) is
    held out. The split depends only on the sorted file list, so every image size of the
    digits export holds out the same scans. A dataset that cannot be read is a ConfigError."""
    try:
        dataset = open_dataset("emt", source, cache=cache, digits_size=image_size)
    except (FileNotFoundError, ValueError, ImportError) as error:
        raise ConfigError(f"EMT dataset {source!r}: {error}") from None
    rng = np.random.default_rng(SPLIT_SEED)
    by_class: dict[int, list[int]] = {}
    for index, (_, label) in enumerate(dataset.folder.samples):
        by_class.setdefault(label, []).append(index)
    heldout: set[int] = set()
    for label in sorted(by_class):
        members = by_class[label]
        count = max(1, round(HOLDOUT_SHARE * len(members)))
        heldout.update(members[i] for i in rng.permutation(len(members))[:count])
    train = [i for i in range(len(dataset.folder)) if i not in heldout]
    if not train:
        raise ConfigError(f"EMT dataset {source!r}: too few images to hold some out")
    return EmtSplit(_subset(dataset, train), _subset(dataset, sorted(heldout)))


def emt_answer(label: str) -> str:
    """The training answer for an image of class ``label`` (see the module docstring)."""
    return label


def emt_examples(dataset: EmtDataset, count: int, seed: int) -> list[SFTExample]:
    """``count`` EMT question-answer pairs on ``dataset`` (its training part): seeded passes
    over every image, so each is used about equally often."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < count:
        order += rng.permutation(len(dataset.folder)).tolist()
    images: dict[int, np.ndarray] = {}
    prompt = dataset.prompt
    examples = []
    for index in order[:count]:
        if index not in images:
            images[index] = load_rgb(dataset.folder.samples[index][0])
        path_label = dataset.folder.samples[index][1]
        examples.append(SFTExample(images[index], prompt, emt_answer(dataset.labels[path_label])))
    return examples


def evaluated_images(heldout: EmtDataset, examples: int | None) -> EmtDataset:
    """The held-out images an evaluation reads: all, or a seeded ``examples`` of them (the
    same ones for every checkpoint)."""
    if examples is None or examples >= len(heldout.folder):
        return heldout
    order = np.random.default_rng(SPLIT_SEED + 1).permutation(len(heldout.folder))
    return _subset(heldout, sorted(int(i) for i in order[:examples]))


def emt_settings(
    dataset: str, examples: int | None, batch_size: int, max_new_tokens: int
) -> dict[str, Any]:
    """What, beside the policy, decides an EMT result; stored with it, so a stored result
    made with other settings is measured again."""
    return {
        "dataset": dataset,
        "examples": examples,
        "holdout_share": HOLDOUT_SHARE,
        "split_seed": SPLIT_SEED,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "temperature": 0.0,
    }


def emt_accuracy(
    policy: Any,
    dataset: str,
    examples: int | None = None,
    batch_size: int = 32,
    max_new_tokens: int = 8,
    cache: Path | None = None,
) -> dict[str, Any]:
    """Greedy EMT accuracy of ``policy`` (anything with ``image_size`` and EMT's
    ``generate``) on the held-out images, scored by EMT's label matching."""
    t0 = time.time()
    split = emt_split(dataset, int(policy.image_size), cache)
    images = evaluated_images(split.heldout, examples)
    payload = run_emt(
        policy,
        [images],
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        seed=SPLIT_SEED,
    )
    summary = payload["summary"][images.name]
    match = summary["label_match"]
    return {
        "settings": emt_settings(dataset, examples, batch_size, max_new_tokens),
        "accuracy": match["accuracy"],
        "samples": summary["samples"],
        "correct": match["correct"],
        "outcomes": {key: match[key] for key in match if key != "accuracy"},
        "skipped": summary["skipped"],
        "outputs": [
            {"label": r["label"], "output": r["output"]} for r in payload["records"][:SHOWN_OUTPUTS]
        ],
        "seconds": time.time() - t0,
    }
