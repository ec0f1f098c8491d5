"""A study spec (YAML) and its resolution into one validated TrainConfig per arm and seed.

A spec names::

    name: lambda                      # studies/<name>/ (default: the file's stem)
    description: ...                  # what it reproduces and why these choices
    base:
      config: numberline_tiny_cpu.yaml  # a TrainConfig preset (beside the spec, or configs/)
      overrides: [threads=2]            # key=value, as on vlrl.train's command line
      foundation:                       # optional: SFT on a mixture that makes the base
        steps: 300
        batch_size: 32
        lr: 1.0e-3
        examples: 9600
        mixture:
          - {kwargs: {n_max: 5}, weight: 1}
          - {kwargs: {n_max: 9}, weight: 1, cot: true, action_noise: 0.5}
          - {emt: sklearn-digits, weight: 1}  # the EMT question on the dataset's
                                        # training part (vlrl.studies.emt_task)
      per_seed: false                   # one base for every seed (as the dissertation's
                                        # shared pretrained model), or one per seed
    arms:
      - {name: sft, kind: sft, overrides: [sft.lr=1.0e-4], checkpoints: [0, 50, 100]}
      - {name: rl, kind: rl, overrides: [ppo.algo=grpo], checkpoints: [0, 5, 10]}
      - {name: sft-rl, kind: rl, warm_start: true, checkpoints: [0, 5, 10]}
                                        # warm_start: the trainer's own SFT (sft.*) first
    checkpoints: {sft: [0, 50, 100], rl: [0, 5, 10]}   # defaults by kind
    seeds: [1, 2, 3]
    evaluation:
      episodes: 200
      seed: 10000                       # episode e of every evaluation starts from seed + e
      temperature: null                 # null: each arm's eval.temperature / ppo.temperature
      num_envs: 50
      id: {n_max: 5}                    # the post-training (in-distribution) variant
      ood: {n_max_9: {n_max: 9}}        # one or more out-of-distribution variants
      metric: success                   # or per_step_accuracy (V-IRL), recognition_accuracy
      emt:                              # optional: EMT accuracy of every checkpoint on
        dataset: sklearn-digits         # the dataset's held-out part (or a folder path)
        examples: null                  # held-out images read (null: all of them)
        batch_size: 32
        max_new_tokens: 8

Checkpoints are in each arm's own units: SFT optimizer steps for an ``sft`` arm, RL
updates for an ``rl`` arm; 0 is the base. Their training FLOPs (SPEC section 2) are
measured at each checkpoint and are the figure's x axis; arms are at matched compute when
their last checkpoints' FLOPs agree (the table shows them side by side).

Arms train on the base env kwargs + ``evaluation.id`` + their overrides; every arm is
evaluated on the same variants (base env kwargs + the variant's kwargs) with the same
paired episodes. With ``evaluation.emt`` every evaluated checkpoint also gets its greedy
EMT accuracy (the forgetting measure of SPEC section 2.5); that block is not part of the
study's fingerprint, so it can be added to a finished study and a rerun measures it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlrl.config import ConfigError, TrainConfig, load_config, read_yaml_file, to_dict

KINDS = ("sft", "rl")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SPEC_KEYS = {"name", "description", "base", "arms", "checkpoints", "seeds", "evaluation"}
BASE_KEYS = {"config", "overrides", "foundation", "per_seed"}
FOUNDATION_KEYS = {
    "steps",
    "batch_size",
    "lr",
    "lr_min",
    "warmup_ratio",
    "examples",
    "max_grad_norm",
    "mixture",
}
COMPONENT_KEYS = {"kwargs", "weight", "cot", "action_noise", "emt"}
# An EMT component is a dataset and a weight; the env keys mean nothing for it.
EMT_COMPONENT_KEYS = {"emt", "weight"}
EMT_KEYS = {"dataset", "examples", "batch_size", "max_new_tokens"}
ARM_KEYS = {"name", "kind", "overrides", "checkpoints", "label", "warm_start"}
EVAL_KEYS = {"episodes", "seed", "temperature", "num_envs", "id", "ood", "metric", "emt"}
# What the figure and table show: episode success, or per-step accuracy (V-IRL, as the
# dissertation reports it); its binomial s.e. counts episodes or steps.
METRICS = ("success", "per_step_accuracy", "recognition_accuracy")
# Keys the study sets on every arm itself (an arm's overrides may not name them).
STUDY_OWNED = (
    "seed",
    "out_dir",
    "run_name",
    "init_from",
    "checkpoint_every",
    "keep_checkpoints",
    "stop_after_updates",
    "ppo.num_updates",
    "sft.max_steps",
    "sft.enabled",
    "eval.episodes",
    "eval.seed",
    "eval.every",
    "env.ood_kwargs",
)


@dataclass
class MixtureComponent:
    """One variant of the foundation mixture: its env kwargs, its share of the examples,
    CoT or not (null: env.cot), and its expert's action noise (null: sft.action_noise);
    or, with ``emt`` set (a dataset), the EMT question on that dataset's training part."""

    kwargs: dict
    weight: float = 1.0
    cot: bool | None = None
    action_noise: float | None = None
    emt: str | None = None


@dataclass
class Foundation:
    """SFT from the configured model on a mixture of variants: the study's base."""

    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    lr_min: float = 0.0
    warmup_ratio: float = 0.03
    examples: int | None = None  # default: steps x batch_size (one epoch)
    max_grad_norm: float = 1.0
    mixture: list[MixtureComponent] = field(default_factory=list)


@dataclass
class Arm:
    name: str
    kind: str
    overrides: list[str]
    checkpoints: list[int]
    label: str = ""
    warm_start: bool = False  # rl only: the trainer's SFT warm start (sft.*) before RL


@dataclass
class EmtEvaluation:
    """The EMT accuracy measured at every checkpoint (:mod:`vlrl.studies.emt_task`)."""

    dataset: str
    examples: int | None = None  # held-out images read; None: all
    batch_size: int = 32
    max_new_tokens: int = 8


@dataclass
class Evaluation:
    episodes: int
    seed: int
    temperature: float | None
    num_envs: int | None
    id: dict
    ood: dict[str, dict]
    metric: str = "success"
    emt: EmtEvaluation | None = None

    def variants(self) -> list[str]:
        """Variant names in panel order: ``id`` first, then the OOD ones."""
        return ["id", *self.ood]


@dataclass
class StudySpec:
    name: str
    description: str
    base_config: Path | None
    base_overrides: list[str]
    foundation: Foundation | None
    per_seed: bool
    arms: list[Arm]
    seeds: list[int]
    evaluation: Evaluation
    source: Path | None = None

    # ------------------------------------------------------------------ configs

    def base_cfg(self, seed: int) -> TrainConfig:
        """The base config (preset + base overrides + seed): what the foundation builds."""
        return load_config(self.base_config, [*self.base_overrides, f"seed={seed}"])

    def variant_kwargs(self) -> dict[str, dict]:
        """Env kwargs of every evaluation variant (base env kwargs + the variant's)."""
        base = load_config(self.base_config, self.base_overrides).env.kwargs
        out = {"id": {**base, **self.evaluation.id}}
        for name, kwargs in self.evaluation.ood.items():
            out[name] = {**base, **kwargs}
        return out

    def arm_cfg(self, arm: Arm, seed: int, run_root: Path, base_policy: Path) -> TrainConfig:
        """The validated TrainConfig of one arm and seed. RL arms: the trainer's run from
        the base (no SFT), checkpointed at every listed update; SFT arms: the SFT loop's
        settings (the study drives it)."""
        ev = self.evaluation
        forced = [
            f"seed={seed}",
            f"out_dir={run_root}",
            "run_name=run",
            f"init_from={base_policy}",
            f"eval.episodes={ev.episodes}",
            f"eval.seed={ev.seed}",
            "eval.every=0",
            "env.ood_kwargs={}",
            "stop_after_updates=null",
        ]
        if ev.num_envs is not None:
            forced.append(f"eval.num_envs={ev.num_envs}")
        last = max(arm.checkpoints)
        if arm.kind == "rl":
            positive = [c for c in arm.checkpoints if c > 0]
            forced += [
                "sft.enabled=false",
                f"ppo.num_updates={last}",
                f"checkpoint_every={math.gcd(*positive)}",
                "keep_checkpoints=0",
            ]
            if arm.warm_start:  # the trainer's SFT runs only without init_from
                forced += ["init_from=null", f"model.name={base_policy}", "sft.enabled=true"]
        else:
            # run_sft asks whether to stop after every step but the last: one step more
            # is planned so that it hands back its state at the last checkpoint too.
            forced += ["sft.enabled=true", f"sft.max_steps={last + 1}"]
        temperature = [] if ev.temperature is None else [f"eval.temperature={ev.temperature}"]
        cfg = load_config(
            self.base_config,
            [
                *self.base_overrides,
                *_kwargs_overrides(ev.id),
                *temperature,
                *arm.overrides,
                *forced,
            ],
        )
        if arm.kind == "sft":
            from vlrl.training.sft import sft_steps

            planned = sft_steps(
                cfg.sft.num_examples, cfg.sft.batch_size, cfg.sft.epochs, cfg.sft.max_steps
            )
            if planned < last + 1:
                raise ConfigError(
                    f"arm {arm.name!r}: sft.num_examples={cfg.sft.num_examples} x "
                    f"sft.epochs={cfg.sft.epochs} / sft.batch_size={cfg.sft.batch_size} gives "
                    f"{planned} steps, fewer than the last checkpoint + 1 ({last + 1}); raise "
                    "sft.num_examples or sft.epochs"
                )
        return cfg

    # ------------------------------------------------------------------ resolution

    def resolved(self) -> dict[str, Any]:
        """The spec with every default filled in and each arm's full config (first seed),
        as written to ``spec.resolved.yaml``."""
        placeholder = Path("<study>/work")
        arms = []
        for arm in self.arms:
            cfg = self.arm_cfg(arm, self.seeds[0], placeholder / "arms", placeholder / "base")
            arms.append(
                {
                    "name": arm.name,
                    "label": arm.label,
                    "kind": arm.kind,
                    "overrides": list(arm.overrides),
                    "checkpoints": list(arm.checkpoints),
                    "warm_start": arm.warm_start,
                    "config": to_dict(cfg),
                }
            )
        foundation = None
        if self.foundation is not None:
            f = self.foundation
            foundation = {
                "steps": f.steps,
                "batch_size": f.batch_size,
                "lr": f.lr,
                "lr_min": f.lr_min,
                "warmup_ratio": f.warmup_ratio,
                "examples": f.examples,
                "max_grad_norm": f.max_grad_norm,
                "mixture": [_component_dict(c) for c in f.mixture],
            }
        ev = self.evaluation
        return {
            "name": self.name,
            "description": self.description,
            "source": _shown_path(self.source),
            "base": {
                "config": _shown_path(self.base_config),
                "overrides": list(self.base_overrides),
                "foundation": foundation,
                "per_seed": self.per_seed,
                "resolved": to_dict(self.base_cfg(self.seeds[0])),
            },
            "seeds": list(self.seeds),
            "evaluation": {
                "episodes": ev.episodes,
                "seed": ev.seed,
                "temperature": ev.temperature,
                "num_envs": ev.num_envs,
                "id": ev.id,
                "ood": ev.ood,
                "metric": ev.metric,
                "variant_kwargs": self.variant_kwargs(),
                # only when set, so that the specs without it keep their fingerprints
                **({"emt": asdict(ev.emt)} if ev.emt is not None else {}),
            },
            "arms": arms,
        }


def _component_dict(c: MixtureComponent) -> dict[str, Any]:
    if c.emt is not None:
        return {"emt": c.emt, "weight": c.weight}
    # the env components as before the EMT component existed (same fingerprints)
    return {"kwargs": c.kwargs, "weight": c.weight, "cot": c.cot, "action_noise": c.action_noise}


def _shown_path(path: Path | None) -> str | None:
    """A path as the resolved spec shows it: relative to the repository when inside it."""
    if path is None:
        return None
    root = configs_dir()
    if root is not None:
        try:
            return str(path.resolve().relative_to(root.resolve().parent))
        except ValueError:
            pass
    return str(path)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(resolved: dict[str, Any]) -> dict[str, Any]:
    """Digests of what decides a study's results: one for the base and the evaluation, one
    per arm (its resolved config without per-process settings such as threads). Seeds and
    arms can be added to a study without changing the others' digests."""
    clean = copy.deepcopy(resolved)
    # EMT results carry their own settings (scoring re-measures a stored one made with
    # others), so the EMT block may be added to or changed in a study that has run.
    clean["evaluation"].pop("emt", None)
    base = clean["base"]
    for key in ("config", "overrides"):  # their content is in the resolved configs
        base.pop(key, None)
    arms = {}
    for arm in clean["arms"]:
        arm.pop("overrides", None)
        arm.pop("label", None)
    for cfg in [base["resolved"], *(arm["config"] for arm in clean["arms"])]:
        for key in ("threads", "progress", "tensorboard", "device"):
            cfg.pop(key, None)
    for arm in clean["arms"]:
        arm["config"].pop("seed", None)  # set per seed
        arms[arm["name"]] = _digest(arm)
    return {"base": _digest([base, clean["evaluation"]]), "arms": arms}


def fingerprint_conflicts(old: Any, new: dict[str, Any]) -> list[str]:
    """What an earlier run of a study (its fingerprint ``old``) and this spec disagree on:
    the base or evaluation, or an arm both have. Empty: the spec may go on in that folder."""
    if not isinstance(old, dict) or "base" not in old:
        return ["the folder's spec.resolved.yaml has no fingerprint this version reads"]
    problems = []
    if old["base"] != new["base"]:
        problems.append("the base, its foundation or the evaluation differ")
    for name, digest in (old.get("arms") or {}).items():
        if name in new["arms"] and new["arms"][name] != digest:
            problems.append(f"arm {name!r} differs")
    return problems


def dump_resolved(resolved: dict[str, Any]) -> str:
    return yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None, width=100)


# ------------------------------------------------------------------ finding and parsing


def configs_dir() -> Path | None:
    """``configs/`` beside the package (a checkout) or inside it (an install)."""
    here = Path(__file__).resolve().parent.parent
    for root in (here.parent / "configs", here / "configs"):
        if root.is_dir():
            return root
    return None


def studies_dir() -> Path | None:
    """``configs/studies``: the shipped study specs."""
    root = configs_dir()
    return root / "studies" if root is not None and (root / "studies").is_dir() else None


def shipped_specs() -> list[str]:
    folder = studies_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder else []


def find_spec(name_or_path: str) -> Path:
    """A spec file: an existing path, else ``configs/studies/<name>.yaml``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"study spec not found: {path}")
        return path
    folder = studies_dir()
    if folder is not None and (folder / f"{name_or_path}.yaml").is_file():
        return folder / f"{name_or_path}.yaml"
    known = ", ".join(shipped_specs()) or "none"
    raise ConfigError(f"no study named {name_or_path!r} (shipped: {known})")


def load_spec(name_or_path: str) -> StudySpec:
    """Read, check and resolve a spec; every problem is a ConfigError naming the key."""
    path = find_spec(name_or_path)
    data = read_yaml_file(path)
    try:
        spec = parse_spec(data, path)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    # resolve every arm now: a bad override fails before anything runs
    try:
        spec.resolved()
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    return spec


def _unknown_keys(where: str, data: dict, known: set[str]) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {extra}; known: {sorted(known)}")


def _mapping(where: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def _str_list(where: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigError(f"{where}: expected a list of key=value strings, got {value!r}")
    return list(value)


def _int(where: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{where}: expected an integer >= {lo}, got {value!r}")
    return value


def _number(where: str, value: Any, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value) or value < lo:
        raise ConfigError(f"{where}: expected a finite number >= {lo}, got {value!r}")
    return float(value)


def _checkpoints(where: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of integers, got {value!r}")
    points = [_int(where, v) for v in value]
    if points != sorted(set(points)):
        raise ConfigError(f"{where}: must be increasing without repeats, got {points}")
    if points[0] != 0:
        points = [0, *points]  # the base is every arm's first point
    if len(points) < 2:
        raise ConfigError(f"{where}: needs a checkpoint after 0, got {points}")
    return points


def _kwargs_overrides(kwargs: dict) -> list[str]:
    """env.kwargs.<key>=<value> overrides (values as YAML flow scalars)."""
    out = []
    for key, value in kwargs.items():
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
        out.append(f"env.kwargs.{key}={text}")
    return out


def _resolve_config_path(value: Any, spec_path: Path | None) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"base.config: expected a file name, got {value!r}")
    candidates = []
    if spec_path is not None:
        candidates.append(spec_path.parent / value)
    folder = configs_dir()
    if folder is not None:
        candidates.append(folder / value)
    candidates.append(Path(value))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(
        f"base.config: {value!r} not found (looked in {[str(c) for c in candidates]})"
    )


def parse_spec(data: dict, path: Path | None = None) -> StudySpec:
    _unknown_keys("spec", data, SPEC_KEYS)
    name = data.get("name", path.stem if path is not None else None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(
            f"name: a folder-safe name (letters, digits, _ . -) is needed, got {name!r}"
        )
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ConfigError("description: expected text")

    base = _mapping("base", data.get("base"))
    _unknown_keys("base", base, BASE_KEYS)
    base_config = _resolve_config_path(base.get("config"), path)
    base_overrides = _str_list("base.overrides", base.get("overrides"))
    per_seed = base.get("per_seed", False)
    if not isinstance(per_seed, bool):
        raise ConfigError(f"base.per_seed: expected true or false, got {per_seed!r}")
    foundation = _parse_foundation(base.get("foundation"))

    seeds = data.get("seeds", [1])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"seeds: expected a non-empty list of integers, got {seeds!r}")
    seeds = [_int("seeds", s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: repeated seed in {seeds}")

    defaults = _mapping("checkpoints", data.get("checkpoints"))
    _unknown_keys("checkpoints", defaults, set(KINDS))
    raw_arms = data.get("arms")
    if not isinstance(raw_arms, list) or not raw_arms:
        raise ConfigError("arms: expected a non-empty list of arms")
    arms: list[Arm] = []
    for i, raw in enumerate(raw_arms):
        where = f"arms[{i}]"
        raw = _mapping(where, raw)
        _unknown_keys(where, raw, ARM_KEYS)
        arm_name = raw.get("name")
        if not isinstance(arm_name, str) or not NAME_RE.match(arm_name):
            raise ConfigError(f"{where}.name: a folder-safe name is needed, got {arm_name!r}")
        if any(a.name == arm_name for a in arms):
            raise ConfigError(f"{where}.name: {arm_name!r} is used twice")
        kind = raw.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: one of {KINDS}, got {kind!r}")
        overrides = _str_list(f"{where}.overrides", raw.get("overrides"))
        for item in overrides:
            key = item.split("=", 1)[0].strip().removeprefix("--")
            if key in STUDY_OWNED:
                raise ConfigError(
                    f"{where}.overrides: {key} is set by the study (checkpoints, seeds and "
                    "evaluation are spec keys)"
                )
        points = raw.get("checkpoints", defaults.get(kind))
        if points is None:
            raise ConfigError(f"{where}.checkpoints: none given and no checkpoints.{kind} default")
        label = raw.get("label", arm_name)
        if not isinstance(label, str):
            raise ConfigError(f"{where}.label: expected text")
        warm = raw.get("warm_start", False)
        if not isinstance(warm, bool) or (warm and kind != "rl"):
            raise ConfigError(f"{where}.warm_start: true or false, and only for rl arms")
        points = _checkpoints(f"{where}.checkpoints", points)
        arms.append(Arm(arm_name, kind, overrides, points, label, warm))

    ev = _mapping("evaluation", data.get("evaluation"))
    _unknown_keys("evaluation", ev, EVAL_KEYS)
    temperature = ev.get("temperature")
    if temperature is not None:
        temperature = _number("evaluation.temperature", temperature)
    num_envs = ev.get("num_envs")
    if num_envs is not None:
        num_envs = _int("evaluation.num_envs", num_envs, 1)
    ood = _mapping("evaluation.ood", ev.get("ood"))
    metric = ev.get("metric", "success")
    if metric not in METRICS:
        raise ConfigError(f"evaluation.metric: one of {METRICS}, got {metric!r}")
    for key, kwargs in ood.items():
        if not isinstance(key, str) or not NAME_RE.match(key) or key == "id":
            raise ConfigError(f"evaluation.ood: bad variant name {key!r}")
        _mapping(f"evaluation.ood.{key}", kwargs)
    evaluation = Evaluation(
        episodes=_int("evaluation.episodes", ev.get("episodes", 200), 1),
        seed=_int("evaluation.seed", ev.get("seed", 10_000)),
        temperature=temperature,
        num_envs=num_envs,
        id=dict(_mapping("evaluation.id", ev.get("id"))),
        ood={k: dict(v or {}) for k, v in ood.items()},
        metric=metric,
        emt=_parse_emt(ev.get("emt")),
    )
    return StudySpec(
        name=name,
        description=description.strip(),
        base_config=base_config,
        base_overrides=base_overrides,
        foundation=foundation,
        per_seed=per_seed,
        arms=arms,
        seeds=seeds,
        evaluation=evaluation,
        source=path.resolve() if path is not None else None,
    )


def _emt_dataset(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{where}: a dataset is needed: 'sklearn-digits' or the path of an ImageFolder "
            f"(root/<class name>/<images>) or a CIFAR / MNIST archive folder, got {value!r}"
        )
    return value.strip()


def _emt_component(where: str, item: dict) -> MixtureComponent:
    """A mixture component with ``emt``: the EMT question on that dataset's training part."""
    extra = sorted(set(item) - EMT_COMPONENT_KEYS)
    if extra:
        raise ConfigError(
            f"{where}: an emt component takes only {sorted(EMT_COMPONENT_KEYS)}; {extra} "
            "describe an env variant (make that a component of its own)"
        )
    weight = _number(f"{where}.weight", item.get("weight", 1.0))
    if weight <= 0:
        raise ConfigError(f"{where}.weight: must be > 0")
    return MixtureComponent({}, weight, emt=_emt_dataset(f"{where}.emt", item["emt"]))


def _parse_emt(raw: Any) -> EmtEvaluation | None:
    if raw is None:
        return None
    if isinstance(raw, str):  # the short form: just the dataset
        raw = {"dataset": raw}
    raw = _mapping("evaluation.emt", raw)
    _unknown_keys("evaluation.emt", raw, EMT_KEYS)
    if "dataset" not in raw:
        raise ConfigError("evaluation.emt.dataset: required ('sklearn-digits' or a folder path)")
    examples = raw.get("examples")
    if examples is not None:
        examples = _int("evaluation.emt.examples", examples, 1)
    return EmtEvaluation(
        dataset=_emt_dataset("evaluation.emt.dataset", raw["dataset"]),
        examples=examples,
        batch_size=_int("evaluation.emt.batch_size", raw.get("batch_size", 32), 1),
        max_new_tokens=_int("evaluation.emt.max_new_tokens", raw.get("max_new_tokens", 8), 1),
    )


def _parse_foundation(raw: Any) -> Foundation | None:
    if raw is None:
        return None
    raw = _mapping("base.foundation", raw)
    _unknown_keys("base.foundation", raw, FOUNDATION_KEYS)
    if "steps" not in raw:
        raise ConfigError("base.foundation.steps: required")
    mixture = raw.get("mixture") or [{"kwargs": {}}]
    if not isinstance(mixture, list):
        raise ConfigError("base.foundation.mixture: expected a list of variants")
    components = []
    for i, item in enumerate(mixture):
        where = f"base.foundation.mixture[{i}]"
        item = _mapping(where, item)
        _unknown_keys(where, item, COMPONENT_KEYS)
        if "emt" in item:
            components.append(_emt_component(where, item))
            continue
        cot = item.get("cot")
        if cot is not None and not isinstance(cot, bool):
            raise ConfigError(f"{where}.cot: expected true, false or null")
        noise = item.get("action_noise")
        if noise is not None:
            noise = _number(f"{where}.action_noise", noise)
            if noise > 1:
                raise ConfigError(f"{where}.action_noise: a share in [0, 1], got {noise}")
        weight = _number(f"{where}.weight", item.get("weight", 1.0))
        if weight <= 0:
            raise ConfigError(f"{where}.weight: must be > 0")
        components.append(
            MixtureComponent(
                dict(_mapping(f"{where}.kwargs", item.get("kwargs"))), weight, cot, noise
            )
        )
    examples = raw.get("examples")
    if examples is not None:
        examples = _int("base.foundation.examples", examples, 1)
    return Foundation(
        steps=_int("base.foundation.steps", raw["steps"], 1),
        batch_size=_int("base.foundation.batch_size", raw.get("batch_size", 32), 1),
        lr=_number("base.foundation.lr", raw.get("lr", 1e-3)),
        lr_min=_number("base.foundation.lr_min", raw.get("lr_min", 0.0)),
        warmup_ratio=_number("base.foundation.warmup_ratio", raw.get("warmup_ratio", 0.03)),
        examples=examples,
        max_grad_norm=_number("base.foundation.max_grad_norm", raw.get("max_grad_norm", 1.0)),
        mixture=components,
    )
