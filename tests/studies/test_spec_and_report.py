"""Study specs (parsing, refusals, every shipped spec resolves) and the table's arithmetic,
without training anything."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from vlrl.config import ConfigError
from vlrl.studies.report import aggregate, markdown_table, summarize
from vlrl.studies.spec import (
    find_spec,
    fingerprint,
    fingerprint_conflicts,
    load_spec,
    parse_spec,
    shipped_specs,
    studies_dir,
)

MICRO = Path(__file__).with_name("micro.yaml")


def _micro() -> dict:
    return yaml.safe_load(MICRO.read_text())


def test_micro_spec_resolves_each_arm():
    spec = load_spec(str(MICRO))
    cfg = spec.arm_cfg(spec.arms[1], 1, Path("/tmp/u"), Path("/tmp/base"))
    assert cfg.ppo.num_updates == 2 and cfg.checkpoint_every == 1 and cfg.keep_checkpoints == 0
    assert cfg.sft.enabled is False and cfg.init_from == "/tmp/base"
    assert cfg.env.kwargs["n_max"] == 5 and cfg.env.ood_kwargs == {}
    sft = spec.arm_cfg(spec.arms[0], 1, Path("/tmp/u"), Path("/tmp/base"))
    assert sft.sft.max_steps == 3 and sft.sft.lr == 1e-4  # last checkpoint + 1
    assert spec.variant_kwargs()["n_max_9"]["n_max"] == 9
    assert spec.evaluation.variants() == ["id", "n_max_9"]


def test_a_warm_start_arm_runs_the_trainers_sft_from_the_base():
    spec = load_spec("sft-for-rl")
    warm = next(a for a in spec.arms if a.warm_start)
    cfg = spec.arm_cfg(warm, 1, Path("/tmp/u"), Path("/tmp/base"))
    assert cfg.init_from is None and cfg.model.name == "/tmp/base" and cfg.sft.enabled
    cold = spec.arm_cfg(spec.arms[0], 1, Path("/tmp/u"), Path("/tmp/base"))
    assert cold.init_from == "/tmp/base" and not cold.sft.enabled
    data = _micro()
    data["arms"][0]["warm_start"] = True  # an sft arm
    with pytest.raises(ConfigError, match="warm_start"):
        parse_spec(data, MICRO)


def test_fingerprint_allows_more_seeds_and_arms_but_not_other_results():
    a = fingerprint(load_spec(str(MICRO)).resolved())
    data = _micro()
    data["base"]["overrides"] = [o for o in data["base"]["overrides"] if o != "threads=1"]
    assert fingerprint(parse_spec(data, MICRO).resolved()) == a  # threads: per process
    data["seeds"] = [1, 2]
    data["arms"].append({"name": "rl2", "kind": "rl", "checkpoints": [0, 1]})
    assert fingerprint_conflicts(a, fingerprint(parse_spec(data, MICRO).resolved())) == []
    data["arms"][1]["overrides"] = ["ppo.lr=3.0e-5"]
    assert fingerprint_conflicts(a, fingerprint(parse_spec(data, MICRO).resolved())) == [
        "arm 'rl' differs"
    ]
    data["evaluation"]["episodes"] = 8
    assert "the base, its foundation or the evaluation differ" in fingerprint_conflicts(
        a, fingerprint(parse_spec(data, MICRO).resolved())
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), "unknown key"),
        (lambda d: d["arms"][0].update(overrides=["ppo.num_updates=3"]), "set by the study"),
        (lambda d: d["arms"][0].update(checkpoints=[0, 2, 1]), "increasing"),
        (lambda d: d["arms"][0].update(kind="dpo"), "kind"),
        (lambda d: d["arms"][1].update(name="sft"), "used twice"),
        (lambda d: d["arms"][0].update(checkpoints=[0, 20]), "fewer than the last checkpoint"),
        (lambda d: d["arms"][1].update(overrides=["ppo.lr=-1"]), "ppo.lr"),
        (lambda d: d["evaluation"].update(metric="reward"), "evaluation.metric"),
        (lambda d: d["base"]["foundation"].pop("steps"), "steps"),
        (lambda d: d.update(seeds=[1, 1]), "repeated"),
    ],
)
def test_bad_specs_are_refused_naming_the_key(tmp_path, change, message):
    data = _micro()
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_spec(str(path))


def test_names_find_shipped_specs():
    with pytest.raises(ConfigError, match="no study named"):
        find_spec("no-such-study")
    assert studies_dir() is not None
    for name in ("rules", "visual", "verification", "sft-for-rl", "cot", "lambda"):
        assert name in shipped_specs() and f"{name}_gpu" in shipped_specs()


@pytest.mark.parametrize("name", shipped_specs())
def test_every_shipped_spec_resolves(name):
    spec = load_spec(name)
    assert spec.description, f"{name}: say what it reproduces and why"
    assert spec.resolved()["arms"]


def _records():
    # two seeds; the RL arm gains OOD, the SFT arm loses it
    rows = []
    for seed, (s0, s1, r1) in {1: (0.5, 0.3, 0.7), 2: (0.5, 0.4, 0.6)}.items():
        for arm, kind, final in (("sft", "sft", s1), ("rl", "rl", r1)):
            for step, value, flops in ((0, 0.5, 10.0), (4, final, 20.0 + seed)):
                rows.append(
                    {
                        "arm": arm,
                        "kind": kind,
                        "seed": seed,
                        "step": step,
                        "flops": flops,
                        "variants": {
                            "id": {"success": value, "episodes": 100.0},
                            "ood": {"success": value, "episodes": 100.0},
                        },
                    }
                )
        del s0
    return rows


def test_table_arithmetic():
    arms = [
        SimpleNamespace(name="sft", kind="sft", label="SFT", checkpoints=[0, 4]),
        SimpleNamespace(name="rl", kind="rl", label="RL", checkpoints=[0, 4]),
    ]
    curves = aggregate(_records(), arms, ["id", "ood"], "success")
    final = curves["rl"][-1]
    assert final["flops"] == pytest.approx(21.5)
    assert final["ood"]["mean"] == pytest.approx(0.65) and final["ood"]["n"] == 200
    assert final["ood"]["stderr"] == pytest.approx(math.sqrt(0.65 * 0.35 / 200))
    summary = summarize(curves, arms, ["id", "ood"])
    rl, sft = summary["arms"]["rl"]["ood"], summary["arms"]["sft"]["ood"]
    assert rl["change"] == pytest.approx(0.15) and sft["change"] == pytest.approx(-0.15)
    assert rl["per_seed"] == pytest.approx([0.2, 0.1])
    assert rl["stderr_seeds"] == pytest.approx(0.05)
    assert rl["best"] == pytest.approx(0.65) and rl["best_step"] == 4
    contrast = next(c for c in summary["contrasts"] if c["variant"] == "ood")
    assert contrast["rl_change_minus_sft_change"] == pytest.approx(0.3)
    assert contrast["z"] == pytest.approx(0.3 / contrast["stderr"])
    # Shared base: the difference is final(RL) - final(SFT); only the finals' s.e. count.
    assert contrast["shared_start"]
    se_finals = math.sqrt(0.65 * 0.35 / 200 + 0.35 * 0.65 / 200)
    assert contrast["stderr"] == pytest.approx(se_finals)
    # Per-seed differences 0.4 and 0.2: seed s.e. = std(ddof=1) / sqrt(2) = 0.1.
    assert contrast["per_seed"] == pytest.approx([0.4, 0.2])
    assert contrast["stderr_seeds"] == pytest.approx(0.1)
    assert contrast["z_seeds"] == pytest.approx(3.0)
    text = markdown_table(summary, ["id", "ood"], "success", "## t")
    assert f"| ood | rl | sft | +30.0 ± {100 * se_finals:.1f} | " in text and "| 3.00 |" in text
    assert "| rl | rl |" in text and "+30.0" in text


def test_contrast_with_different_starts_counts_both_changes():
    # The arms were evaluated from different bases (e.g. CoT on and off): nothing cancels.
    rows = [r for r in _records()]
    for r in rows:
        if r["arm"] == "rl" and r["step"] == 0:
            r["variants"]["ood"] = {"success": 0.4, "episodes": 100.0}
    arms = [
        SimpleNamespace(name="sft", kind="sft", label="SFT", checkpoints=[0, 4]),
        SimpleNamespace(name="rl", kind="rl", label="RL", checkpoints=[0, 4]),
    ]
    summary = summarize(aggregate(rows, arms, ["ood"], "success"), arms, ["ood"])
    (contrast,) = summary["contrasts"]
    rl, sft = summary["arms"]["rl"]["ood"], summary["arms"]["sft"]["ood"]
    assert not contrast["shared_start"]
    assert contrast["rl_change_minus_sft_change"] == pytest.approx(0.25 + 0.15)
    assert contrast["stderr"] == pytest.approx(math.sqrt(rl["stderr"] ** 2 + sft["stderr"] ** 2))
