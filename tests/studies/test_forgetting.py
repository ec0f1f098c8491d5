"""The forgetting study's parts: the EMT split and mixture component (never the held-out
images), the spec keys and their refusals, the EMT hook on a scripted policy, its caching
in the evaluation files, the report's EMT section, and a micro forgetting study end to end."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from vlrl.config import ConfigError, load_config
from vlrl.studies import run_study, scoring
from vlrl.studies.base import foundation_examples
from vlrl.studies.emt_task import HOLDOUT_SHARE, emt_accuracy, emt_split
from vlrl.studies.report import emt_markdown, emt_summary, write_report
from vlrl.studies.spec import (
    EmtEvaluation,
    Foundation,
    MixtureComponent,
    configs_dir,
    fingerprint,
    load_spec,
    parse_spec,
)
from vlrl.suites.emt import emt_prompt
from vlrl.suites.image_folders import load_rgb

MICRO = Path(__file__).with_name("micro.yaml")
SIZE = 32  # the smallest size the NumberLine renderer draws; the split is the same at every size


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The vlrl cache in a temporary folder (the digits export is written there)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VLRL_CACHE", str(folder))
    return folder


def _micro() -> dict:
    return yaml.safe_load(MICRO.read_text())


# ------------------------------------------------------------------ split and mixture


def test_split_holds_out_a_fixed_share_of_every_class_whatever_the_size(cache):
    small = emt_split("sklearn-digits", SIZE, cache)
    other = emt_split("sklearn-digits", 24, cache)
    train = {p.relative_to(small.train.folder.root) for p, _ in small.train.folder.samples}
    held = {p.relative_to(small.heldout.folder.root) for p, _ in small.heldout.folder.samples}
    assert not train & held and len(train) + len(held) == 1797
    assert held == {
        p.relative_to(other.heldout.folder.root) for p, _ in other.heldout.folder.samples
    }
    for label in range(10):
        n_train = sum(1 for _, c in small.train.folder.samples if c == label)
        n_held = sum(1 for _, c in small.heldout.folder.samples if c == label)
        assert n_held == round(HOLDOUT_SHARE * (n_train + n_held))
    assert load_rgb(small.heldout.folder.samples[0][0]).shape == (SIZE, SIZE, 3)
    assert small.heldout.labels == [str(d) for d in range(10)]


def test_the_emt_component_trains_on_the_training_part_only(cache):
    cfg = load_config(configs_dir() / "numberline_tiny_cpu.yaml", ["env.kwargs.n_max=5"])
    foundation = Foundation(
        steps=10,
        examples=400,
        mixture=[MixtureComponent({"n_max": 5}), MixtureComponent({}, 3.0, emt="sklearn-digits")],
    )
    examples = foundation_examples(cfg, foundation, SIZE, seed=1)
    split = emt_split("sklearn-digits", SIZE, cache)
    labels = split.train.labels
    prompt = emt_prompt(labels)
    emt = [e for e in examples if e.prompt == prompt]
    assert len(examples) == 400 and len(emt) == 300  # weight 3 of 4
    train = {_digest(load_rgb(p)): labels[c] for p, c in split.train.folder.samples}
    held = {_digest(load_rgb(p)) for p, _ in split.heldout.folder.samples} - set(train)
    for example in emt:
        key = _digest(example.image)
        assert key in train and key not in held
        assert example.response == train[key]  # the answer is the image's own label
    assert len({_digest(e.image) for e in emt}) > 250  # seeded passes, few repeats
    others = [e for e in examples if e.prompt != prompt]
    assert len(others) == 100 and all(e.response.startswith("{") for e in others)


# ------------------------------------------------------------------ spec


def _with_emt(component: Any = None, evaluation: Any = None) -> dict:
    data = _micro()
    if component is not None:
        data["base"]["foundation"]["mixture"].append(component)
    if evaluation is not None:
        data["evaluation"]["emt"] = evaluation
    return data


def test_spec_reads_the_emt_component_and_evaluation():
    spec = parse_spec(
        _with_emt({"emt": "sklearn-digits", "weight": 2}, {"dataset": "sklearn-digits"}), MICRO
    )
    component = spec.foundation.mixture[-1]
    assert component.emt == "sklearn-digits" and component.weight == 2.0
    assert spec.evaluation.emt == EmtEvaluation("sklearn-digits", None, 32, 8)
    short = parse_spec(_with_emt(evaluation="/data/cifar10"), MICRO)
    assert short.evaluation.emt.dataset == "/data/cifar10"
    resolved = spec.resolved()
    assert resolved["base"]["foundation"]["mixture"][-1] == {"emt": "sklearn-digits", "weight": 2.0}
    assert resolved["evaluation"]["emt"]["dataset"] == "sklearn-digits"


@pytest.mark.parametrize(
    ("component", "evaluation", "message"),
    [
        (
            {"emt": "sklearn-digits", "kwargs": {"n_max": 5}},
            None,
            r"takes only \['emt', 'weight'\]",
        ),
        ({"emt": "sklearn-digits", "cot": True}, None, "emt component takes only"),
        ({"emt": ""}, None, r"mixture\[2\]\.emt: a dataset is needed"),
        ({"emt": 3}, None, "a dataset is needed"),
        ({"emt": "sklearn-digits", "weight": 0}, None, r"mixture\[2\]\.weight: must be > 0"),
        (None, {"examples": 10}, r"evaluation\.emt\.dataset: required"),
        (None, {"dataset": "sklearn-digits", "split": 0.5}, r"evaluation\.emt: unknown key"),
        (None, {"dataset": "sklearn-digits", "examples": 0}, r"emt\.examples: expected an integer"),
        (None, {"dataset": "sklearn-digits", "max_new_tokens": 0}, "max_new_tokens"),
        (None, ["sklearn-digits"], "evaluation.emt: expected a mapping"),
    ],
)
def test_bad_emt_keys_are_refused_naming_the_key(component, evaluation, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(_with_emt(component, evaluation), MICRO)


def test_emt_evaluation_can_be_added_to_a_study_but_an_emt_base_is_another_base():
    plain = fingerprint(parse_spec(_micro(), MICRO).resolved())
    with_eval = fingerprint(parse_spec(_with_emt(evaluation="sklearn-digits"), MICRO).resolved())
    assert with_eval == plain
    with_component = parse_spec(_with_emt({"emt": "sklearn-digits"}), MICRO).resolved()
    assert fingerprint(with_component)["base"] != plain["base"]


def test_an_unreadable_emt_dataset_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no folder at"):
        emt_split(str(tmp_path / "absent"), SIZE, tmp_path)


def test_shipped_forgetting_specs_measure_emt():
    tiny = load_spec("forgetting")
    assert tiny.evaluation.emt is not None
    assert any(c.emt == tiny.evaluation.emt.dataset for c in tiny.foundation.mixture)
    assert {a.kind for a in tiny.arms} == {"sft", "rl"}
    gpu = load_spec("forgetting_gpu")
    assert gpu.evaluation.emt is not None and gpu.evaluation.emt.dataset != "sklearn-digits"


# ------------------------------------------------------------------ the hook


class ScriptedPolicy:
    """Answers from a table image -> text (the truth for the classes it "knows"); records
    the sampling settings it was asked for."""

    def __init__(self, answers: dict[str, str], size: int = SIZE):
        self.image_size = size
        self.answers = answers
        self.temperatures: list[float] = []
        self.seen: list[str] = []

    def generate(self, images, prompts, *, temperature, max_new_tokens, seed=None, **_):
        self.temperatures.append(temperature)
        keys = [_digest(image) for image in images]
        self.seen += keys
        return SimpleNamespace(texts=[self.answers.get(k, "no idea") for k in keys])


def test_the_hook_scores_the_held_out_images_with_emt_label_matching(cache):
    split = emt_split("sklearn-digits", SIZE, cache)
    held = split.heldout.folder.samples
    labels = split.heldout.labels
    # right on classes 0-4 (in a sentence), a wrong digit on 5-6, silent on 7-9
    answers = {}
    for path, c in held:
        key = _digest(load_rgb(path))
        if c <= 4:
            answers[key] = f"The number in the image is {labels[c]}."
        elif c <= 6:
            answers[key] = labels[(c + 1) % 10]
    policy = ScriptedPolicy(answers)
    result = emt_accuracy(policy, "sklearn-digits", batch_size=50, cache=cache)
    right = sum(1 for _, c in held if c <= 4)
    assert result["samples"] == len(held) and result["correct"] == right
    assert math.isclose(result["accuracy"], right / len(held))
    assert result["outcomes"]["wrong"] == sum(1 for _, c in held if c in (5, 6))
    assert result["outcomes"]["no_label"] == sum(1 for _, c in held if c >= 7)
    assert set(policy.temperatures) == {0.0}  # greedy
    train_keys = {_digest(load_rgb(p)) for p, _ in split.train.folder.samples}
    assert len(set(policy.seen) - train_keys) > 0.9 * len(held)  # the held-out images
    assert result["settings"]["temperature"] == 0.0 and result["settings"]["examples"] is None

    first = ScriptedPolicy(answers)
    subset = emt_accuracy(first, "sklearn-digits", examples=40, cache=cache)
    again = ScriptedPolicy(answers)
    emt_accuracy(again, "sklearn-digits", examples=40, cache=cache)
    assert subset["samples"] == 40 and first.seen == again.seen  # the same images each time


def test_an_evaluation_file_without_emt_gets_it_added_and_is_then_kept(tmp_path, monkeypatch):
    path = tmp_path / "step-5.json"
    old = {"arm": "rl", "step": 5, "variants": {"id": {"success": 0.5, "episodes": 4}}}
    path.write_text(json.dumps(old))
    calls = {"load": 0, "emt": []}

    def load_agent(cfg, policy_dir):
        calls["load"] += 1
        return SimpleNamespace(policy="the policy")

    def no_episodes(*args, **kwargs):
        raise AssertionError("the env results were stored; they must not be measured again")

    def fake_emt(policy, dataset, examples, batch_size, max_new_tokens):
        calls["emt"].append(examples)
        settings = scoring.emt_settings(dataset, examples, batch_size, max_new_tokens)
        return {"settings": settings, "accuracy": 0.25, "samples": 8}

    monkeypatch.setattr(scoring, "load_agent", load_agent)
    monkeypatch.setattr(scoring, "evaluate_policy", no_episodes)
    monkeypatch.setattr(scoring, "emt_accuracy", fake_emt)
    emt = EmtEvaluation("sklearn-digits", examples=8)
    payload = scoring.cached_evaluation(path, None, tmp_path, {}, {}, emt)
    stored = json.loads(path.read_text())
    assert stored["variants"] == old["variants"] and stored["emt"]["accuracy"] == 0.25
    assert payload == stored and calls == {"load": 1, "emt": [8]}
    scoring.cached_evaluation(path, None, tmp_path, {}, {}, emt)  # measured: kept
    assert calls["load"] == 1
    scoring.cached_evaluation(path, None, tmp_path, {}, {}, None)  # no EMT asked: kept
    assert calls["load"] == 1
    scoring.cached_evaluation(path, None, tmp_path, {}, {}, EmtEvaluation("sklearn-digits", 16))
    assert calls["emt"] == [8, 16]  # other settings: measured again


# ------------------------------------------------------------------ the report


def _records(emt: bool = True) -> list[dict[str, Any]]:
    # one seed; base 80% EMT, SFT ends at 50% (forgets 30 points), RL at 70% (10 points)
    rows = []
    for arm, kind, final in (("sft", "sft", 0.5), ("rl", "rl", 0.7)):
        for step, accuracy in ((0, 0.8), (2, final)):
            row = {
                "arm": arm,
                "kind": kind,
                "seed": 1,
                "step": step,
                "flops": 10.0 + step,
                "variants": {"id": {"success": 0.5, "episodes": 100.0}},
            }
            if emt:
                row["emt"] = {"accuracy": accuracy, "samples": 100}
            rows.append(row)
    return rows


def _arms() -> list[SimpleNamespace]:
    return [
        SimpleNamespace(name="sft", kind="sft", label="SFT", checkpoints=[0, 2]),
        SimpleNamespace(name="rl", kind="rl", label="RL", checkpoints=[0, 2]),
    ]


def test_emt_table_arithmetic():
    summary = emt_summary(_records(), _arms())
    sft, rl = summary["arms"]["sft"]["emt"], summary["arms"]["rl"]["emt"]
    assert math.isclose(sft["start"], 0.8) and math.isclose(sft["change"], -0.3)
    assert math.isclose(rl["change"], -0.1)
    se_sft = math.sqrt(0.8 * 0.2 / 100 + 0.5 * 0.5 / 100)
    assert math.isclose(sft["stderr"], se_sft)
    (contrast,) = summary["contrasts"]
    assert math.isclose(contrast["rl_change_minus_sft_change"], 0.2)
    # Both arms start from the same base evaluation: the start cancels, only the finals count.
    se = math.sqrt(0.5 * 0.5 / 100 + 0.7 * 0.3 / 100)
    assert contrast["shared_start"] and math.isclose(contrast["stderr"], se)
    assert math.isclose(contrast["z"], 0.2 / se)
    text = emt_markdown(summary, "sklearn-digits")
    assert (
        "EMT accuracy (forgetting)" in text and "| sft | sft | 12 | 80.0 | 50.0 | -30.0 ±" in text
    )
    assert f"| rl | sft | +20.0 ± {100 * se:.1f} | {0.2 / se:.2f} | - (1 seed) | - |" in text
    assert emt_summary(_records(emt=False), _arms()) is None


def test_the_report_has_the_emt_section_only_when_measured(tmp_path):
    extra = {"episodes": 100, "n_params": 1, "d_init": 1, "emt_dataset": "sklearn-digits"}
    with_emt = write_report(tmp_path / "a", "x", _records(), _arms(), ["id"], "success", [1], extra)
    assert "EMT accuracy (forgetting)" in (tmp_path / "a" / "table.md").read_text()
    assert with_emt["emt"]["arms"]["rl"]["emt"]["final"] == 0.7
    assert (tmp_path / "a" / "figure.png").stat().st_size > 0
    plain = write_report(
        tmp_path / "b", "x", _records(emt=False), _arms(), ["id"], "success", [1], extra
    )
    assert "emt" not in plain and "EMT" not in (tmp_path / "b" / "table.md").read_text()


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_micro_forgetting_study_end_to_end(tmp_path, cache):
    data = _with_emt(
        {"emt": "sklearn-digits"},
        {"dataset": "sklearn-digits", "examples": 12, "max_new_tokens": 3},
    )
    data["name"] = "micro-forgetting"
    data["arms"][0]["checkpoints"] = [0, 2]
    data["arms"][1]["checkpoints"] = [0, 1]
    spec = parse_spec(data, MICRO)
    out = tmp_path / "studies"
    table = run_study(spec, out)
    study = out / "micro-forgetting"
    base = next((study / "evals" / "base" / "seed-1").glob("*.json"))
    for path in (
        base,
        study / "evals" / "sft" / "seed-1" / "step-2.json",
        study / "evals" / "rl" / "seed-1" / "step-1.json",
    ):
        emt = json.loads(path.read_text())["emt"]
        assert emt["samples"] == 12 and 0.0 <= emt["accuracy"] <= 1.0
        assert emt["settings"]["dataset"] == "sklearn-digits"
    text = (study / "table.md").read_text()
    assert "EMT accuracy (forgetting)" in text and "| rl | sft |" in text
    assert set(table["emt"]["arms"]) == {"sft", "rl"}
    assert table["emt"]["curves"]["rl"][0]["emt"]["n"] == 12
    assert table["emt"]["arms"]["rl"]["emt"]["start"] == table["emt"]["arms"]["sft"]["emt"]["start"]
