"""Evaluation: success rate, return, per-step accuracy, GP-VL recognition accuracy, ID vs OOD,
training compute in FLOPs, and curves. ``python -m vlrl.evaluate`` evaluates a checkpoint.

Definitions (SPEC section 1):
- success: the env's ``info["success"]`` on the final step when it reports one, otherwise
  an episode return > 0 (the gym_cards convention);
- per-step accuracy: card games, the share of steps whose action equals the expert's
  action in that state; text-action envs (GeneralPoints, V-IRL), the share of turns the
  verifier scores correct (each verification retry counts as a sample);
- recognition accuracy (GP-VL): the share of turns whose recognised cards are right
  (``info["recognition_correct"]`` or ``info["cards_correct"]`` when the env reports it);
- fallback rate: the share of steps where f could not read an action and drew one at random.
- compute: X_SFT = 6 N (D_init + D_SFT), X_RL = 6 N (D_init + D_RL) + 2 N D_buffer, with N
  the parameter count and D token counts (D_buffer: tokens processed while collecting
  rollouts; D_RL: tokens passed through forward+backward in PPO epochs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlrl.logging_utils import binomial_stderr

RECOGNITION_KEYS = ("recognition_correct", "cards_correct")


def episode_success(info: dict, episode_return: float) -> bool:
    """The env's success flag when it gives one, else return > 0."""
    if "success" in info:
        return bool(info["success"])
    return episode_return > 0


def expert_action(env: Any) -> int | None:
    """The expert's action index in the env's current state (None for text-action envs)."""
    unwrapped = env.unwrapped
    if getattr(unwrapped, "takes_text_action", False):
        return None
    if hasattr(unwrapped, "expert_action"):  # the card envs know the index directly
        return int(unwrapped.expert_action())
    from vlrl.envs import parse_action

    try:
        index, fallback = parse_action(env, unwrapped.expert_response(cot=False))
    except Exception:  # an env without an expert just has no per-step accuracy
        return None
    return None if fallback else int(index)


def make_env(env_id: str, kwargs: dict):
    import gymnasium as gym

    import vlrl.envs  # noqa: F401  (registers the ids)

    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise ValueError(f"cannot make env {env_id!r} with {kwargs}: {error}") from error


def eval_temperature(cfg: Any) -> float:
    """The evaluation sampling temperature of a TrainConfig: ``eval.temperature`` when set
    (0 included: greedy), else ``ppo.temperature``."""
    return cfg.eval.temperature if cfg.eval.temperature is not None else cfg.ppo.temperature


def unscored_answer(info: dict) -> bool:
    """Whether a text-action env left this answer unscored (GeneralPoints' time-out answer,
    V-IRL's answer past the budget at a point)."""
    return info.get("scored") is False or info.get("outcome") == "timeout"


def evaluate_agent(
    agent: Any,
    env_id: str,
    env_kwargs: dict,
    episodes: int,
    seed: int,
    num_envs: int = 32,
    temperature: float | None = None,
    max_steps_per_episode: int = 1000,
) -> dict[str, float]:
    """Play ``episodes`` episodes (episode e reset with seed + e, so every call with the
    same seed sees the same start states) and return the metrics of the module docstring."""
    num_envs = max(1, min(num_envs, episodes))
    envs = [make_env(env_id, env_kwargs) for _ in range(num_envs)]
    next_episode = 0
    obs: list[Any] = [None] * num_envs
    active = [False] * num_envs
    returns = [0.0] * num_envs
    lengths = [0] * num_envs

    def start(i: int) -> None:
        nonlocal next_episode
        obs[i], _ = envs[i].reset(seed=seed + next_episode)
        next_episode += 1
        active[i] = True
        returns[i] = 0.0
        lengths[i] = 0

    for i in range(num_envs):
        start(i)
    results: list[tuple[float, bool, int]] = []
    step_correct: list[bool] = []
    recognition: list[bool] = []
    fallbacks = 0
    steps = 0
    while any(active):
        ids = [i for i in range(num_envs) if active[i]]
        sub_envs = [envs[i] for i in ids]
        experts = [expert_action(env) for env in sub_envs]
        act = agent.act(
            sub_envs, [obs[i] for i in ids], temperature=temperature, need_logprob=False
        )
        for j, i in enumerate(ids):
            obs[i], reward, terminated, truncated, info = envs[i].step(act.actions[j])
            steps += 1
            returns[i] += float(reward)
            lengths[i] += 1
            fallbacks += int(bool(act.fallbacks[j]) or bool(info.get("used_fallback", False)))
            if experts[j] is not None:
                step_correct.append(int(act.actions[j]) == experts[j])
            elif getattr(envs[i].unwrapped, "takes_text_action", False):
                if unscored_answer(info):
                    # The answer past the verification budget ends the episode but is not
                    # one of the scored tries that per-step accuracy counts.
                    pass
                elif "per_step_correct" in info:
                    step_correct.append(bool(info["per_step_correct"]))
                else:
                    step_correct.append(
                        info.get("outcome") == "correct" if "outcome" in info else reward > 0
                    )
            for key in RECOGNITION_KEYS:
                if key in info:
                    recognition.append(bool(info[key]))
                    break
            if terminated or truncated or lengths[i] >= max_steps_per_episode:
                results.append((returns[i], episode_success(info, returns[i]), lengths[i]))
                active[i] = False
                if next_episode < episodes:
                    start(i)
    for env in envs:
        env.close()
    success = float(np.mean([r[1] for r in results]))
    n = len(results)
    out = {
        "success": success,
        "success_stderr": float(binomial_stderr(success, n)),
        "return": float(np.mean([r[0] for r in results])),
        "episode_length": float(np.mean([r[2] for r in results])),
        "episodes": float(n),
        "steps": float(steps),
        "fallback_rate": fallbacks / max(steps, 1),
        "per_step_accuracy": float(np.mean(step_correct)) if step_correct else math.nan,
    }
    if recognition:
        out["recognition_accuracy"] = float(np.mean(recognition))
    return out


def training_flops(
    n_params: int, d_init: float, d_sft: float = 0.0, d_rl: float = 0.0, d_buffer: float = 0.0
) -> dict[str, float]:
    """SPEC's compute estimates: X_SFT = 6N(D_init + D_SFT), X_RL = 6N(D_init + D_RL) + 2N D_buffer."""
    return {
        "flops_sft": 6.0 * n_params * (d_init + d_sft),
        "flops_rl": 6.0 * n_params * (d_init + d_rl) + 2.0 * n_params * d_buffer,
    }


def _table(rows: dict[str, dict[str, float]]) -> str:
    keys = [
        "success",
        "success_stderr",
        "return",
        "per_step_accuracy",
        "recognition_accuracy",
        "fallback_rate",
        "episodes",
    ]
    names = list(rows)
    lines = [f"{'metric':<22}" + "".join(f"{n:>22}" for n in names)]
    for key in keys:
        if not any(key in rows[n] for n in names):
            continue
        cells = []
        for n in names:
            value = rows[n].get(key, math.nan)
            cells.append(f"{value:>22.4f}" if isinstance(value, float) else f"{value!s:>22}")
        lines.append(f"{key:<22}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Evaluate a checkpoint (a run folder, a checkpoints/update-* folder or a saved policy)."""
    parser = argparse.ArgumentParser(
        prog="python -m vlrl.evaluate",
        description="Evaluate a vlrl policy on an env (and its OOD variant) and report metrics.",
    )
    parser.add_argument(
        "checkpoint",
        help="run folder, checkpoint folder, or saved policy folder; 'tiny' for an untrained tiny model",
    )
    parser.add_argument("--env", default=None, help="env id (default: the run's training env)")
    parser.add_argument(
        "--env-kwargs",
        default=None,
        help='JSON constructor arguments, e.g. \'{"face_rule": "11-12-13"}\'',
    )
    parser.add_argument(
        "--ood-kwargs", default=None, help="JSON arguments of an OOD variant evaluated side by side"
    )
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--cot", choices=["true", "false"], default=None)
    parser.add_argument(
        "--plot", action="store_true", help="also redraw the run's learning curve PNG"
    )
    parser.add_argument("--out", default=None, help="write the metrics JSON here")
    args = parser.parse_args(argv)

    from vlrl.config import TrainConfig, load_config
    from vlrl.logging_utils import plot_learning_curve, read_jsonl
    from vlrl.train import build_agent, resolve_checkpoint

    path = Path(args.checkpoint)
    if not path.exists() and args.checkpoint != "tiny":
        print(
            f"error: {args.checkpoint}: no such run, checkpoint or policy folder", file=sys.stderr
        )
        return 2
    run_dir, policy_path = resolve_checkpoint(path) if path.exists() else (None, args.checkpoint)
    cfg = (
        load_config(run_dir / "config.yaml")
        if run_dir and (run_dir / "config.yaml").is_file()
        else TrainConfig()
    )
    if args.env:
        cfg.env.id = args.env
    if args.env_kwargs:
        cfg.env.kwargs = json.loads(args.env_kwargs)
    if args.ood_kwargs is not None:
        cfg.env.ood_kwargs = json.loads(args.ood_kwargs)
    if args.cot is not None:
        cfg.env.cot = args.cot == "true"
    agent = build_agent(cfg, policy_path=policy_path)
    temperature = args.temperature if args.temperature is not None else eval_temperature(cfg)
    kwargs = agent.env_kwargs(cfg.env.kwargs)
    started = time.time()
    rows = {
        "in-distribution": evaluate_agent(
            agent, cfg.env.id, kwargs, args.episodes, args.seed, args.num_envs, temperature
        )
    }
    if cfg.env.ood_kwargs:
        rows["out-of-distribution"] = evaluate_agent(
            agent,
            cfg.env.id,
            agent.env_kwargs({**cfg.env.kwargs, **cfg.env.ood_kwargs}),
            args.episodes,
            args.seed,
            args.num_envs,
            temperature,
        )
    report: dict[str, Any] = {
        "env": cfg.env.id,
        "checkpoint": str(args.checkpoint),
        "seconds": time.time() - started,
        **rows,
    }
    if run_dir is not None and (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
        report["compute"] = {k: summary[k] for k in summary if k.startswith("flops")}
    print(_table(rows))
    if "compute" in report:
        for key, value in report["compute"].items():
            print(f"{key:<22}{value:>22.3e}")
    if args.plot and run_dir is not None:
        png = plot_learning_curve(
            read_jsonl(run_dir / "metrics.jsonl"),
            run_dir / "learning_curve.png",
            title=run_dir.name,
        )
        print(f"curve: {png}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
