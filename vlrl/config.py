"""Run configuration: nested dataclasses, loadable from YAML, overridable with ``key=value``.

Every field carries its documentation in ``metadata["help"]`` (shown by ``--help-config``),
so the config is self-describing. The resolution order is: dataclass defaults, then the
``--config`` YAML file, then ``key=value`` overrides (dotted keys reach nested sections,
e.g. ``ppo.lr=3e-5``; top-level fields can be given bare, e.g. ``seed=3``). Values are
parsed as YAML scalars (``1e-5``, ``true``, ``[1, 2]``) and checked against the field type,
so a typo or a wrong type is an error naming the key, never a silently ignored setting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default (copied when mutable) and its help text."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class EnvConfig:
    """Which environment the agent plays and how it is prompted."""

    id: str = _f(
        "vlrl/NumberLine-v0",
        "Registered gymnasium id (vlrl/NumberLine-v0, vlrl/EZPoints-v0, vlrl/Points24-v0, vlrl/Blackjack-v0, vlrl/GeneralPoints-v0, ...).",
    )
    kwargs: dict = _f(
        {},
        "Constructor arguments of the training env (rule and visual variant: n_max, face_rule, suits, vision, image_size, ...). image_size defaults to the policy's input size.",
    )
    ood_kwargs: dict = _f(
        {},
        "Constructor arguments of the out-of-distribution variant evaluated beside the training one (empty: no OOD evaluation).",
    )
    num_envs: int = _f(
        8, "Environments stepped in parallel per rank; one batched generation call serves them all."
    )
    cot: bool = _f(
        True, "Prompt for chain-of-thought (thoughts before the answer) or for the answer alone."
    )
    legal_only: bool = _f(
        False,
        "When f cannot read an action, draw the random fallback from the legal actions instead of the whole action set.",
    )


@dataclass
class ModelConfig:
    """The policy: backbone, fine-tuning mode and numerics."""

    name: str = _f(
        "tiny",
        "'tiny' (random-weight tiny LLaVA for CPU), a local LLaVA-NeXT / Mllama folder, a saved vlrl policy folder, or 'cnn' for the CNN+RL baseline.",
    )
    dtype: str = _f("float32", "Parameter dtype: float32 or bfloat16.")
    lora: bool = _f(
        False,
        "Fine-tune LoRA adapters (on all linear layers, vision tower included) instead of all weights.",
    )
    lora_r: int = _f(128, "LoRA rank.")
    lora_alpha: int = _f(256, "LoRA alpha.")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    attn: str = _f("sdpa", "Attention implementation: sdpa, eager or flash_attention_2.")
    mof: str | None = _f(None, "Mixture-of-features vision: null, 'additive' or 'interleaved'.")
    mof_dino: str | None = _f(
        None,
        "Local DINOv2 folder for the MoF tower (needed with a LLaVA folder; 'tiny' defaults to a random tiny tower).",
    )
    cnn_hidden: int = _f(256, "CNN baseline: width of the 2-layer MLP on the frozen features.")


@dataclass
class SFTConfig:
    """Supervised fine-tuning on expert responses (the warm start, or `python -m vlrl.sft`)."""

    enabled: bool = _f(
        True, "Run SFT before PPO (python -m vlrl.train); ignored by python -m vlrl.sft."
    )
    num_examples: int = _f(
        4096, "Expert (prompt, image, response) pairs generated for the SFT set."
    )
    epochs: float = _f(1.0, "Passes over the SFT set (fractions allowed: a partly trained start).")
    max_steps: int | None = _f(None, "Hard cap on optimizer steps (overrides epochs when smaller).")
    batch_size: int = _f(32, "Examples per optimizer step.")
    lr: float = _f(2e-5, "Peak learning rate (cosine decay to lr_min after warmup).")
    lr_min: float = _f(0.0, "Final learning rate of the cosine schedule.")
    warmup_ratio: float = _f(0.03, "Share of steps with linear warmup.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    cot: bool | None = _f(None, "Responses with chain of thought; null follows env.cot.")
    suboptimal_share: float = _f(
        0.0,
        "GeneralPoints: share of examples that are later turns of a sub-optimal trajectory (wrong tries with verifier messages in the prompt, then the expert answer).",
    )
    max_grad_norm: float = _f(1.0, "Gradient-norm clip of SFT steps.")
    action_noise: float = _f(
        0.0,
        "Card games: share of SFT targets whose action is replaced by a uniformly random one (an imperfect expert; thoughts stay right).",
    )


@dataclass
class PPOConfig:
    """PPO as in Algorithm 1 (defaults: the reference card-game runs, SPEC section 2)."""

    num_updates: int = _f(
        25, "PPO updates (each: collect a buffer, then update_epochs passes over it)."
    )
    buffer_size: int = _f(
        512, "Transitions per update per rank (B); rounded up to a multiple of env.num_envs."
    )
    gamma: float = _f(0.9, "Discount factor.")
    gae_lambda: float = _f(0.95, "GAE lambda.")
    thought_lambda: float = _f(
        0.5, "CoT scaling factor: log pi(a) = lambda * log pi(thought) + log pi(action)."
    )
    clip_coef: float = _f(0.1, "Clip range of the policy ratio.")
    vf_clip_coef: float = _f(
        0.1, "Clip range of the value prediction around its rollout value (clipped value loss)."
    )
    vf_coef: float = _f(0.5, "Weight of the value loss.")
    ent_coef: float = _f(0.0, "Weight of the entropy bonus (mean per-token entropy of the output).")
    kl_coef: float = _f(
        0.0,
        "Weight of the KL penalty to the initial (post-SFT) policy; 0 disables it and its extra forward pass.",
    )
    norm_adv: bool = _f(True, "Normalise advantages over the whole buffer.")
    update_epochs: int = _f(4, "Passes over the buffer per update.")
    minibatch_size: int = _f(
        128,
        "Transitions per optimizer step (the reference: mini-batch 1 x 128 accumulation steps).",
    )
    forward_batch: int = _f(
        8,
        "Sequences padded together into one forward pass inside a minibatch (1 = the reference's batch-1 accumulation; the loss is the same up to fp).",
    )
    max_grad_norm: float = _f(0.01, "Gradient-norm clip.")
    lr: float = _f(1e-5, "Peak learning rate.")
    lr_min: float = _f(1e-9, "Learning rate at the end of the cosine schedule.")
    vf_lr: float | None = _f(
        None,
        "Peak learning rate of the value head (null: ppo.lr, as the reference runs); scaled by the same schedule.",
    )
    lr_schedule: str = _f("cosine", "cosine (lr -> lr_min over num_updates) or constant.")
    adam_eps: float = _f(1e-7, "Adam epsilon.")
    weight_decay: float = _f(0.0, "Adam weight decay (0: the reference runs use none).")
    temperature: float = _f(
        0.2, "Sampling temperature (also divides the logits when log-probs are recomputed)."
    )
    top_p: float = _f(1.0, "Nucleus sampling threshold.")
    max_new_tokens: int = _f(256, "Generation length limit per step.")
    recompute_old_logprob: bool = _f(
        True,
        "Recompute rollout log-probs with a full forward pass (exactly the update's numerics) instead of summing generation-time token log-probs.",
    )
    target_kl: float | None = _f(
        None, "Stop the update's epochs early when approx_kl exceeds this (null: never)."
    )


@dataclass
class EvalConfig:
    """How success is measured during and after training."""

    episodes: int = _f(
        200, "Episodes per evaluation (the same seeds each time, so start and end are paired)."
    )
    temperature: float | None = _f(
        None, "Sampling temperature at evaluation; null uses ppo.temperature."
    )
    every: int = _f(
        0, "Evaluate every this many updates (0: only at the SFT start and at the end)."
    )
    seed: int = _f(10_000, "Base seed of evaluation episodes (kept apart from training seeds).")
    num_envs: int = _f(32, "Evaluation envs stepped in parallel.")


@dataclass
class DistributedConfig:
    """Scale-out through accelerate (DDP, DeepSpeed ZeRO-2/3, FSDP)."""

    timeout_s: int = _f(
        1800,
        "Process-group time-out in seconds (ranks only meet at optimizer steps and update boundaries).",
    )
    cpu: bool = _f(False, "Force CPU (gloo) even when CUDA is present.")
    mixed_precision: str = _f("no", "accelerate mixed precision: no, bf16, fp16.")


@dataclass
class TrainConfig:
    """Everything one run needs; `python -m vlrl.train` resolves and saves it."""

    exp_name: str = _f("ppo", "Experiment name (part of the run name).")
    seed: int = _f(1, "Base seed; rank r uses seed + 1000 * r for its envs and sampling.")
    out_dir: str = _f("runs", "Folder under which runs/<run name>/ is created.")
    run_name: str | None = _f(
        None, "Run folder name; null: {env}__{exp_name}__{seed}__{unix time}."
    )
    device: str = _f("auto", "auto (cuda when present), cpu or cuda.")
    threads: int | None = _f(None, "torch CPU threads (null: torch's default).")
    checkpoint_every: int = _f(
        5, "Write an atomic checkpoint every this many updates (0: only at the end)."
    )
    keep_checkpoints: int = _f(2, "Checkpoints kept on disk (oldest removed).")
    tensorboard: bool = _f(True, "Also log scalars to TensorBoard.")
    progress: bool = _f(True, "Show a rich progress bar.")
    init_from: str | None = _f(
        None,
        "Start from this saved policy folder (e.g. an SFT run's policy/) instead of model.name.",
    )
    stop_after_updates: int | None = _f(
        None,
        "End this process after this many updates, leaving a resumable checkpoint (used to test resume).",
    )
    env: EnvConfig = field(default_factory=EnvConfig, metadata={"help": "Environment."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Policy."})
    sft: SFTConfig = field(default_factory=SFTConfig, metadata={"help": "SFT warm start."})
    ppo: PPOConfig = field(default_factory=PPOConfig, metadata={"help": "PPO."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Evaluation."})
    distributed: DistributedConfig = field(
        default_factory=DistributedConfig, metadata={"help": "accelerate."}
    )


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation; ints widen to floats, nothing else converts."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if annotation is Any:
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return list(value)
    return value


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.split(".")[-1], known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _apply_mapping(obj: Any, mapping: dict, prefix: str = "") -> None:
    """Write a nested mapping onto a dataclass instance in place, checking keys and types."""
    hints = _field_types(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise _unknown(full, names)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a section (mapping), got {value!r}")
            _apply_mapping(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def _find_section(cfg: Any, dotted: str) -> tuple[Any, str]:
    """Resolve ``a.b.c`` to (the dataclass holding c, 'c'); bare keys may name a nested field
    when it is unique across sections (e.g. ``lr`` is ambiguous, ``num_updates`` is not)."""
    parts = dotted.split(".")
    if len(parts) == 1 and dataclasses.is_dataclass(cfg):
        names = [f.name for f in dataclasses.fields(cfg)]
        if parts[0] not in names:
            owners = [
                n
                for n in names
                if dataclasses.is_dataclass(getattr(cfg, n))
                and parts[0] in [f.name for f in dataclasses.fields(getattr(cfg, n))]
            ]
            if len(owners) == 1:
                return getattr(cfg, owners[0]), parts[0]
            if len(owners) > 1:
                options = ", ".join(f"{o}.{parts[0]}" for o in owners)
                raise ConfigError(f"{dotted!r} is ambiguous: use one of {options}")
    obj = cfg
    for i, part in enumerate(parts[:-1]):
        if not dataclasses.is_dataclass(obj) or part not in [
            f.name for f in dataclasses.fields(obj)
        ]:
            known = (
                [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else []
            )
            raise _unknown(".".join(parts[: i + 1]), known)
        value = getattr(obj, part)
        if isinstance(value, dict):
            # A dict field (env.kwargs.n_max=7): the caller writes into it.
            return (obj, ".".join(parts[i:]))
        obj = value
    return obj, parts[-1]


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``key=value`` strings in order; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        key = key.strip().removeprefix("--")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"{key}: cannot parse value {raw!r}: {error}") from error
        obj, name = _find_section(cfg, key)
        if "." in name:  # into a dict field
            dict_name, *sub = name.split(".")
            target = getattr(obj, dict_name)
            for part in sub[:-1]:
                target = target.setdefault(part, {})
            target[sub[-1]] = value
            continue
        names = [f.name for f in dataclasses.fields(obj)]
        if name not in names:
            raise _unknown(key, names)
        if dataclasses.is_dataclass(getattr(obj, name)):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: is a section; set its fields as {key}.<field>=...")
            _apply_mapping(getattr(obj, name), value, prefix=f"{key}.")
        else:
            setattr(obj, name, _coerce(value, _field_types(type(obj))[name], key))
    return cfg


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, cls: type = TrainConfig
) -> Any:
    """Defaults, then the YAML file at ``path``, then ``overrides``; validated."""
    cfg = cls()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        with path.open() as handle:
            data = yaml.safe_load(handle) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        _apply_mapping(cfg, data)
    apply_overrides(cfg, overrides or [])
    validate(cfg)
    return cfg


def validate(cfg: Any) -> None:
    """Reject values that would fail late (after minutes of rollouts) with a clear message."""
    if not isinstance(cfg, TrainConfig):
        return
    checks = [
        (cfg.env.num_envs >= 1, "env.num_envs must be >= 1"),
        (cfg.ppo.buffer_size >= 1, "ppo.buffer_size must be >= 1"),
        (cfg.ppo.minibatch_size >= 1, "ppo.minibatch_size must be >= 1"),
        (cfg.ppo.forward_batch >= 1, "ppo.forward_batch must be >= 1"),
        (cfg.ppo.update_epochs >= 1, "ppo.update_epochs must be >= 1"),
        (cfg.ppo.temperature > 0, "ppo.temperature must be > 0"),
        (0 < cfg.ppo.gamma <= 1, "ppo.gamma must be in (0, 1]"),
        (0 <= cfg.ppo.gae_lambda <= 1, "ppo.gae_lambda must be in [0, 1]"),
        (
            cfg.ppo.lr_schedule in ("cosine", "constant"),
            "ppo.lr_schedule must be cosine or constant",
        ),
        (
            cfg.model.dtype in ("float32", "bfloat16", "float16"),
            "model.dtype must be float32, bfloat16 or float16",
        ),
        (
            cfg.model.mof in (None, "additive", "interleaved"),
            "model.mof must be null, additive or interleaved",
        ),
        (cfg.eval.episodes >= 1, "eval.episodes must be >= 1"),
        (cfg.sft.batch_size >= 1, "sft.batch_size must be >= 1"),
        (
            cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"),
            "device must be auto, cpu or cuda[:N]",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (for YAML / JSON)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with ``--config``)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cfg: Any = TrainConfig, prefix: str = "") -> str:
    """Every key with its value and help text, one per line (for ``--help-config``);
    ``cfg`` is a config class (its defaults) or a resolved instance."""
    lines = []
    instance = cfg() if isinstance(cfg, type) else cfg
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"[{prefix}{f.name}]  {f.metadata.get('help', '')}")
            lines.append(describe(value, prefix=f"{prefix}{f.name}."))
        else:
            lines.append(f"  {prefix}{f.name} = {value!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)


def env_short_name(env_id: str) -> str:
    """'vlrl/NumberLine-v0' -> 'NumberLine-v0' (run names must be path-safe)."""
    return env_id.split("/")[-1].replace(":", "_")


def make_run_name(cfg: TrainConfig, now: float | None = None) -> str:
    """``{env}__{exp}__{seed}__{time}`` as CleanRL names runs (time: integer unix seconds)."""
    if cfg.run_name:
        return cfg.run_name
    stamp = int(now if now is not None else time.time())
    return f"{env_short_name(cfg.env.id)}__{cfg.exp_name}__{cfg.seed}__{stamp}"
