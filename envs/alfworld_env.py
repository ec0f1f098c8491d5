"""``vlrl/ALFWorld-v0``: an adapter over the ``alfworld`` package (optional dependency).

ALFWorld (Shridhar et al., 2021) is a household task environment with text actions and
a state-dependent set of admissible actions (dissertation Section 4.5, Appendix C.1).
This module wraps alfworld's batched environment (batch size 1) as a gymnasium env that
takes the model's whole text, like GeneralPoints and V-IRL:

- prompt h(o): the scene text, the task and the admissible actions, with a JSON answer
  format ("thoughts" then "action" for CoT; "action" alone otherwise), the content of
  the dissertation's Figure C.10 in this project's wording;
- f: the last ``"action"`` value when it is one of the admissible actions (matching as
  ``vlrl.envs.parsing`` does); otherwise a uniformly drawn admissible action is played
  and flagged (Eq. 4.1, with the state's admissible set as the action set);
- reward per step: 50 * [task won] + goal-condition success rate - 1 * [the model's
  action was not admissible] (SPEC section 1).

alfworld and its game files are not installed with vlrl. Constructing the env without
them raises :class:`ALFWorldUnavailableError` saying what is missing and how to get it
(``pip install alfworld`` / ``pip install "alfworld[full]"`` for the THOR-rendered
vision variant, then ``alfworld-download`` for the game files). Tests and custom setups
pass ``game=``: any object with alfworld's batched API (``reset() -> (obs, infos)``,
``step([action]) -> (obs, scores, dones, infos)``, infos holding lists for
"admissible_commands", "won", "goal_condition_success_rate", optionally "expert_plan";
``get_frames()`` for images).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from vlrl.envs.cards_env import TEXT_CHARSET
from vlrl.envs.parsing import choose_action
from vlrl.envs.render import blank_image

MAX_TEXT_LENGTH = 32_768
MAX_ACTION_LENGTH = 8_192
WIN_REWARD = 50.0
INADMISSIBLE_PENALTY = 1.0
TASK_MARKER = "Your task is to:"
INSTALL_HINT = (
    'install it with `pip install alfworld` (or `pip install "alfworld[full]"` for the '
    "vision variant, which also needs AI2-THOR and a display), then fetch the game files "
    "with `alfworld-download`"
)


class ALFWorldUnavailableError(RuntimeError):
    """alfworld, its game files or its config are missing; the message says which."""


def _default_data_dir() -> Path:
    return Path(os.environ.get("ALFWORLD_DATA", "~/.cache/alfworld")).expanduser()


def make_alfworld_game(config_path: str | Path | None, split: str, vision: bool):
    """Build alfworld's batched environment (batch size 1), or say what is missing."""
    try:
        import yaml
        from alfworld.agents.environment import get_environment
    except ImportError as error:
        raise ALFWorldUnavailableError(
            f"vlrl/ALFWorld-v0 needs the `alfworld` package, which is not importable "
            f"({error}); {INSTALL_HINT}."
        ) from error
    data_dir = _default_data_dir()
    if not (data_dir / "json_2.1.1").is_dir():
        raise ALFWorldUnavailableError(
            f"vlrl/ALFWorld-v0: the ALFWorld game files are missing (no {data_dir / 'json_2.1.1'}); "
            "run `alfworld-download` or point the ALFWORLD_DATA environment variable at "
            "the folder that holds them."
        )
    if config_path is None:
        candidates = [data_dir / "base_config.yaml"]
        try:
            import alfworld

            candidates.append(Path(alfworld.__file__).parent / "configs" / "base_config.yaml")
        except Exception:
            pass
        config_path = next((c for c in candidates if c.is_file()), None)
        if config_path is None:
            raise ALFWorldUnavailableError(
                "vlrl/ALFWorld-v0: no ALFWorld config found (looked for "
                + ", ".join(str(c) for c in candidates)
                + "); pass config_path= the base_config.yaml from the alfworld repository."
            )
    config_path = Path(config_path)
    if not config_path.is_file():
        raise ALFWorldUnavailableError(
            f"vlrl/ALFWorld-v0: config file {config_path} does not exist"
        )
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    env_type = "AlfredThorEnv" if vision else "AlfredTWEnv"
    return get_environment(env_type)(config, train_eval=split).init_env(batch_size=1)


def _first(value: Any, default: Any = None) -> Any:
    """alfworld returns a list per key (one entry per batch element); take element 0."""
    if isinstance(value, list | tuple):
        return value[0] if value else default
    return default if value is None else value


def split_task(text: str) -> tuple[str, str]:
    """(scene description, task) from alfworld's first observation text."""
    scene, marker, task = str(text).partition(TASK_MARKER)
    scene = scene.replace("-= Welcome to TextWorld, ALFRED! =-", "").strip()
    return scene, task.strip().rstrip(".") if marker else ""


def alfworld_prompt(scene: str, task: str, admissible: list[str], cot: bool = True) -> str:
    """h(o) for ALFWorld (Figure C.10's content): scene, task, admissible actions, format."""
    actions = "[" + ", ".join(f"'{a}'" for a in admissible) + "]"
    lines = [
        "You are an expert agent in the ALFRED embodied household environment. "
        f"Here is the text description of the current scene: ['{scene}']. "
        f"Your task is to {task}. "
        f"The admissible actions in the current situation are: {actions}.",
        "Reply with a valid json object in this format:",
        "{",
    ]
    if cot:
        lines.append(
            '  "thoughts": "first describe what you see, using the text description, then '
            'think carefully about which action brings you closer to completing the task",'
        )
    lines += ['  "action": "an admissible action"', "}"]
    return "\n".join(lines)


class ALFWorldEnv(gym.Env):
    """ALFWorld through alfworld's own engine, with text actions and the RL4VLM reward.

    ## Action Space
    ``Text``: the model's whole output; the env applies f over the admissible actions.

    ## Observation Space
    ``Dict(image=Box(0, 255, (S, S, 3), uint8), text=Text)``: the THOR frame (vision)
    or a blank image, and the prompt text for the current state.

    ## Rewards
    50 * won + goal-condition success rate - 1 * [model's action not admissible].

    ## Episode End
    Terminated when alfworld reports the game done (won or lost); truncated after
    ``max_steps`` steps.

    ## Information
    ``success`` (won), ``won``, ``goal_condition_success_rate``, ``admissible_actions``,
    ``inadmissible``, ``used_fallback``, ``action`` (the action played), ``feedback``.

    ## Arguments
    ``config_path`` (alfworld's base_config.yaml), ``split`` ("train", "eval_in_distribution",
    "eval_out_of_distribution"), ``vision``, ``image_size``, ``max_steps`` (50), ``game``
    (an already built alfworld-style batched env, e.g. a fake in tests), ``render_mode``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}
    takes_text_action = True
    answer_key = "action"

    def __init__(
        self,
        config_path: str | Path | None = None,
        split: str = "train",
        vision: bool = False,
        image_size: int = 336,
        max_steps: int = 50,
        game: Any = None,
        render_mode: str | None = None,
    ):
        if int(max_steps) < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.vision = bool(vision)
        self.image_size = int(image_size)
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.action_names: list[str] = []
        self.game = game if game is not None else make_alfworld_game(config_path, split, vision)
        self._blank = blank_image(self.image_size)
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8),
                "text": spaces.Text(MAX_TEXT_LENGTH, min_length=0, charset=TEXT_CHARSET),
            }
        )
        self.action_space = spaces.Text(MAX_ACTION_LENGTH, min_length=0, charset=TEXT_CHARSET)
        self.scene = ""
        self.task = ""
        self.admissible_actions: list[str] = []
        self._infos: dict[str, Any] = {}
        self._steps = 0
        self._done = True
        self._image = self._blank

    def _update(self, infos: dict[str, Any]) -> None:
        self._infos = infos
        self.admissible_actions = [str(a) for a in _first(infos.get("admissible_commands"), [])]
        self._image = self._frame()

    def _frame(self) -> np.ndarray:
        if not self.vision or not hasattr(self.game, "get_frames"):
            return self._blank
        from PIL import Image

        frame = np.asarray(_first(list(self.game.get_frames())), dtype=np.uint8)
        resized = Image.fromarray(frame[..., :3]).resize((self.image_size, self.image_size))
        return np.asarray(resized, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None and hasattr(self.game, "seed"):
            self.game.seed(seed)
        observations, infos = self.game.reset()
        self.scene, self.task = split_task(_first(observations, ""))
        self._steps = 0
        self._done = False
        self._update(infos)
        return self._observation(), self._info(False, False, None, 0.0)

    def step(self, action: Any):
        if self._done:
            raise RuntimeError("ALFWorldEnv.step called before reset() or after the episode ended")
        if not self.admissible_actions:
            raise RuntimeError("the ALFWorld game reported no admissible actions")
        index, used_fallback = choose_action(action, self.admissible_actions, rng=self.np_random)
        played = self.admissible_actions[index]
        observations, _scores, dones, infos = self.game.step([played])
        self._steps += 1
        self.scene = str(_first(observations, ""))
        self._update(infos)
        won = bool(_first(infos.get("won"), False))
        progress = float(_first(infos.get("goal_condition_success_rate"), 0.0))
        reward = WIN_REWARD * won + progress - INADMISSIBLE_PENALTY * used_fallback
        terminated = bool(_first(dones, False)) or won
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        return (
            self._observation(),
            float(reward),
            terminated,
            truncated,
            self._info(won, used_fallback, played, progress),
        )

    def prompt(self, cot: bool = True) -> str:
        """h(o) for the current state."""
        return alfworld_prompt(self.scene, self.task, self.admissible_actions, cot=cot)

    def expert_response(self, cot: bool = True) -> str:
        """The game's expert plan step as an answer (needs alfworld's expert_plan info)."""
        plan = _first(self._infos.get("expert_plan"))
        step = _first(plan) if isinstance(plan, list | tuple) else plan
        if not step:
            raise RuntimeError(
                "this ALFWorld game provides no expert plan; enable alfworld's handcoded "
                "expert (env.expert_type: handcoded in its config)"
            )
        fields: dict[str, str] = {}
        if cot:
            fields["thoughts"] = f"To {self.task}, the next step is to {step}."
        fields["action"] = str(step)
        return json.dumps(fields)

    def _observation(self) -> dict[str, Any]:
        text = "".join(c for c in self.prompt(cot=True) if c in TEXT_CHARSET)[:MAX_TEXT_LENGTH]
        return {"image": self._image.copy(), "text": text}

    def _info(self, won: bool, used_fallback: bool, played: str | None, progress: float) -> dict:
        return {
            "success": bool(won),
            "won": bool(won),
            "goal_condition_success_rate": float(progress),
            "admissible_actions": list(self.admissible_actions),
            "inadmissible": bool(used_fallback),
            "used_fallback": bool(used_fallback),
            "action": played,
            "feedback": self.scene,
        }

    def render(self) -> np.ndarray | None:
        """The current image (rgb_array mode)."""
        return self._image.copy() if self.render_mode == "rgb_array" else None
