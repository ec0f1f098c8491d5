"""SFT instruction data from the environments' experts.

Each example is (image, prompt h(o), expert response) for a state the expert visits:
episodes are reset from consecutive seeds and played by the expert's own answers, so the
data covers the states a good policy meets. CoT and no-CoT responses come from
``env.unwrapped.expert_response(cot)``.

Sub-optimal multi-turn trajectories (GeneralPoints, Appendix D.3): before the expert
answers, the trajectory makes one or more wrong tries (the expert formula with an operator
or a number changed); the env's verifier answers each, so the prompt of the recorded turn
carries the whole revision history (earlier outputs and "You failed this trial because
..." messages) and the target is the expert's answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass
class SFTExample:
    """One supervised pair; ``image`` is None for text-only variants."""

    image: np.ndarray | None
    prompt: str
    response: str


_OPERATOR_SWAP = {"+": "-", "-": "+", "*": "+", "/": "*"}


def corrupt_answer(response: str, rng: np.random.Generator) -> str:
    """A plausible wrong answer: the expert's formula with one operator or digit changed."""
    match = list(re.finditer(r'"formula"\s*:\s*"([^"]*)"', response))
    if not match:
        return response + " = 0"
    m = match[-1]
    formula = m.group(1)
    spots = [i for i, ch in enumerate(formula) if ch in _OPERATOR_SWAP or ch.isdigit()]
    if not spots:
        return response
    i = int(rng.choice(spots))
    ch = formula[i]
    new = (
        _OPERATOR_SWAP[ch]
        if ch in _OPERATOR_SWAP
        else str((int(ch) + 1 + int(rng.integers(0, 8))) % 10)
    )
    formula = formula[:i] + new + formula[i + 1 :]
    return response[: m.start(1)] + formula + response[m.end(1) :]


def with_random_action(response: str, action_names: list[str], rng: np.random.Generator) -> str:
    """The response with its last ``"action"`` value replaced by a uniformly drawn action."""
    matches = list(re.finditer(r'"action"\s*:\s*"([^"]*)"', response))
    if not matches or not action_names:
        return response
    m = matches[-1]
    return response[: m.start(1)] + str(rng.choice(action_names)) + response[m.end(1) :]


def build_sft_examples(
    env_id: str,
    env_kwargs: dict,
    num_examples: int,
    seed: int,
    cot: bool = True,
    suboptimal_share: float = 0.0,
    max_wrong_tries: int = 2,
    action_noise: float = 0.0,
) -> list[SFTExample]:
    """``num_examples`` expert examples from episodes seeded seed, seed + 1, ...

    ``action_noise``: share of card-game examples whose target action is replaced by a
    uniformly random one (an imperfect expert; the trajectory itself follows the expert).
    """
    from vlrl.envs import parse_action
    from vlrl.evaluate import make_env

    if num_examples < 1:
        raise ValueError("num_examples must be >= 1")
    env = make_env(env_id, env_kwargs)
    unwrapped = env.unwrapped
    text_action = bool(getattr(unwrapped, "takes_text_action", False))
    rng = np.random.default_rng(seed)
    examples: list[SFTExample] = []
    episode = 0
    while len(examples) < num_examples:
        obs, _ = env.reset(seed=seed + episode)
        episode += 1
        done = False
        steps = 0
        if text_action and suboptimal_share > 0 and rng.random() < suboptimal_share:
            # wrong tries first; the verifier messages land in the prompt history
            for _ in range(int(rng.integers(1, max_wrong_tries + 1))):
                wrong = corrupt_answer(unwrapped.expert_response(cot=cot), rng)
                obs, _r, terminated, truncated, _info = env.step(wrong)
                if terminated or truncated:
                    done = True
                    break
        while not done and len(examples) < num_examples and steps < 100:
            response = unwrapped.expert_response(cot=cot)
            image = obs["image"] if isinstance(obs, dict) else None
            action = response if text_action else parse_action(env, response)[0]
            target = response
            if not text_action and action_noise > 0 and rng.random() < action_noise:
                target = with_random_action(response, list(unwrapped.action_names), rng)
            examples.append(SFTExample(image, unwrapped.prompt(cot=cot), target))
            obs, _r, terminated, truncated, _info = env.step(action)
            done = bool(terminated or truncated)
            steps += 1
    env.close()
    return examples
