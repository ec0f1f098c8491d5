"""Env steps per second including rendering: vlrl's vector env vs a PIL baseline.

Ours: ``vlrl.envs.vector.CardsVectorEnv`` (one C++ call steps all N games, one batched
numpy composite renders all N images). Baseline: bench/pil_envs.py (pure-Python games
drawing each image with PIL) inside gymnasium's SyncVectorEnv. Both auto-reset on the
next step, both return the full {"image", "text"} observation at the same image size,
both are fed the same uniformly random action stream, for N = 1, 64, 1024.

Each measurement runs for at least ``--seconds`` of wall time (the slow baseline at
N = 1024 therefore covers only a few vector steps; the table says how many).
Target: >= 20x at N = 64. Prints a table and one JSON line.
Usage: ``python bench/envs.py [--games NumberLine Points24 Blackjack] [--seconds 2]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pil_envs import make_pil_env  # noqa: E402
from vlrl.envs.vector import CardsVectorEnv  # noqa: E402


def run(envs, num_envs: int, num_actions: int, seconds: float, min_steps: int) -> tuple[float, int]:
    """(env steps per second, vector steps taken) for random actions after a reset."""
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    envs.step(rng.integers(num_actions, size=num_envs))  # warm-up (first-use allocations)
    steps = 0
    start = time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        envs.step(rng.integers(num_actions, size=num_envs))
        steps += 1
    elapsed = time.perf_counter() - start
    return steps * num_envs / elapsed, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=["NumberLine", "Points24", "Blackjack"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 64, 1024])
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    rows = []
    for game in args.games:
        for n in args.sizes:
            ours_env = CardsVectorEnv(game, n, seed=0, image_size=args.image_size)
            actions = len(ours_env.action_names)
            ours, ours_steps = run(ours_env, n, actions, args.seconds, min_steps=5)
            del ours_env
            baseline_env = SyncVectorEnv(
                [lambda g=game: make_pil_env(g, args.image_size) for _ in range(n)],
                autoreset_mode=AutoresetMode.NEXT_STEP,
            )
            base, base_steps = run(baseline_env, n, actions, args.seconds, min_steps=3)
            baseline_env.close()
            del baseline_env
            rows.append(
                {
                    "game": game,
                    "num_envs": n,
                    "vlrl_steps_per_s": round(ours, 1),
                    "pil_sync_steps_per_s": round(base, 1),
                    "ratio": round(ours / base, 2),
                    "vlrl_vector_steps": ours_steps,
                    "pil_vector_steps": base_steps,
                }
            )

    machine = f"{platform.machine()} {platform.system()}, Python {platform.python_version()}"
    print(
        f"vlrl env stepping with rendering, {args.image_size}x{args.image_size} images ({machine})"
    )
    print()
    header = f"{'game':<12}{'N':>6}{'vlrl steps/s':>15}{'PIL+Sync steps/s':>19}{'ratio':>9}{'steps (ours/PIL)':>19}"
    print(header)
    for row in rows:
        print(
            f"{row['game']:<12}{row['num_envs']:>6}{row['vlrl_steps_per_s']:>15,.0f}"
            f"{row['pil_sync_steps_per_s']:>19,.0f}{row['ratio']:>8.1f}x"
            f"{row['vlrl_vector_steps']:>10}/{row['pil_vector_steps']}"
        )
    at_64 = [row["ratio"] for row in rows if row["num_envs"] == 64]
    result = {
        "bench": "envs",
        "image_size": args.image_size,
        "seconds_per_cell": args.seconds,
        "target": ">= 20x at N = 64",
        "min_ratio_at_64": min(at_64) if at_64 else None,
        "rows": rows,
    }
    print()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
