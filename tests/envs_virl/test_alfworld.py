"""The ALFWorld adapter's prompt, parsing and reward plumbing, against a fake game."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from vlrl.envs.alfworld_env import (
    ALFWorldEnv,
    ALFWorldUnavailableError,
    alfworld_prompt,
    split_task,
)

from .helpers import ensure_registered


class FakeKitchen:
    """A three-subgoal game with alfworld's batched API: take, clean, put a mug."""

    def __init__(self, with_frames: bool = False):
        self.with_frames = with_frames
        self.actions_seen: list[str] = []

    def _infos(self):
        admissible = ["go to countertop 1", "go to sinkbasin 1", "go to coffeemachine 1", "look"]
        if self.where == "countertop 1" and not self.holding:
            admissible.append("take mug 1 from countertop 1")
        if self.where == "sinkbasin 1" and self.holding:
            admissible.append("clean mug 1 with sinkbasin 1")
        if self.where == "coffeemachine 1" and self.holding:
            admissible.append("put mug 1 in/on coffeemachine 1")
        done = [self.holding, self.clean, self.placed]
        plan = []
        if not self.holding:
            plan = (
                ["go to countertop 1"]
                if self.where != "countertop 1"
                else ["take mug 1 from countertop 1"]
            )
        elif not self.clean:
            plan = (
                ["go to sinkbasin 1"]
                if self.where != "sinkbasin 1"
                else ["clean mug 1 with sinkbasin 1"]
            )
        elif not self.placed:
            plan = (
                ["go to coffeemachine 1"]
                if self.where != "coffeemachine 1"
                else ["put mug 1 in/on coffeemachine 1"]
            )
        return {
            "admissible_commands": [admissible],
            "won": [self.placed],
            "goal_condition_success_rate": [sum(done) / 3],
            "expert_plan": [plan],
        }

    def reset(self):
        self.where, self.holding, self.clean, self.placed = "middle", False, False, False
        text = (
            "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. You see "
            "a countertop 1, a sinkbasin 1 and a coffeemachine 1.\n\nYour task is to: put a "
            "clean mug in coffeemachine."
        )
        return [text], self._infos()

    def step(self, actions):
        (action,) = actions
        self.actions_seen.append(action)
        if action.startswith("go to "):
            self.where = action[len("go to ") :]
        elif action.startswith("take mug"):
            self.holding = True
        elif action.startswith("clean mug"):
            self.clean = True
        elif action.startswith("put mug") and self.clean:
            self.placed = True
        return [f"You did: {action}."], [0], [self.placed], self._infos()

    def get_frames(self):
        return [np.full((30, 40, 3), 200 if self.holding else 50, np.uint8)]


def test_prompt_holds_scene_task_and_admissible_actions():
    env = ALFWorldEnv(game=FakeKitchen())
    obs, info = env.reset(seed=0)
    assert env.task == "put a clean mug in coffeemachine"
    prompt = env.prompt()
    assert "You are in the middle of a room" in prompt and "Welcome" not in prompt
    assert "Your task is to put a clean mug in coffeemachine." in prompt
    assert "'go to countertop 1'" in prompt and '"thoughts"' in prompt
    assert '"thoughts"' not in env.prompt(cot=False) and '"action"' in env.prompt(cot=False)
    assert obs["text"] == prompt and info["admissible_actions"] == env.admissible_actions
    assert env.takes_text_action and env.answer_key == "action" and env.action_names == []


def test_expert_plan_wins_with_the_rewards_of_the_spec():
    env = ALFWorldEnv(game=FakeKitchen())
    env.reset(seed=0)
    rewards = []
    while True:
        _, reward, terminated, truncated, info = env.step(env.expert_response())
        rewards.append(reward)
        assert not info["used_fallback"] and not info["inadmissible"]
        if terminated or truncated:
            break
    assert terminated and info["success"] and info["won"]
    # go, take (1/3), go, clean (2/3), go, put (won: 50 + 1)
    assert rewards == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 51.0])


def test_inadmissible_or_missing_actions_cost_one_and_play_an_admissible_action():
    game = FakeKitchen()
    env = ALFWorldEnv(game=game)
    env.reset(seed=3)
    _, reward, *_, info = env.step('{"action": "fly to the moon"}')
    assert reward == pytest.approx(-1.0 + info["goal_condition_success_rate"])
    assert info["inadmissible"] and info["used_fallback"]
    assert game.actions_seen[-1] in [
        "go to countertop 1",
        "go to sinkbasin 1",
        "go to coffeemachine 1",
        "look",
    ]
    _, reward, *_, info = env.step("garbage without any json")
    assert info["inadmissible"] and reward <= 0.0
    _, reward, *_, info = env.step('{"thoughts": "t", "action": "Go To Countertop 1"}')
    assert not info["inadmissible"] and info["action"] == "go to countertop 1"


def test_seeded_fallbacks_reproduce():
    def played(seed):
        game = FakeKitchen()
        env = ALFWorldEnv(game=game)
        env.reset(seed=seed)
        for _ in range(6):
            env.step("no action here")
        return game.actions_seen

    assert played(1) == played(1)


def test_step_limit_truncates_and_vision_frames_are_resized():
    env = ALFWorldEnv(game=FakeKitchen(with_frames=True), vision=True, image_size=64, max_steps=2)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and int(obs["image"][0, 0, 0]) == 50
    env.step('{"action": "go to countertop 1"}')
    obs, _, terminated, truncated, _ = env.step('{"action": "take mug 1 from countertop 1"}')
    assert (terminated, truncated) == (False, True)
    assert int(obs["image"][0, 0, 0]) == 200
    with pytest.raises(RuntimeError):
        env.step('{"action": "look"}')


def test_check_env_with_the_fake_game():
    from gymnasium.utils.env_checker import check_env

    check_env(ALFWorldEnv(game=FakeKitchen(), image_size=32), skip_render_check=True)


def test_missing_alfworld_is_a_clear_error():
    try:
        import alfworld  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("alfworld is installed here; the missing-package path cannot be shown")
    with pytest.raises(ALFWorldUnavailableError, match="alfworld") as caught:
        ALFWorldEnv()
    assert "pip install alfworld" in str(caught.value) and "alfworld-download" in str(caught.value)
    ensure_registered()
    with pytest.raises(ALFWorldUnavailableError):
        gym.make("vlrl/ALFWorld-v0")


def test_missing_game_files_and_config_are_named(monkeypatch, tmp_path):
    import sys
    import types

    built = {}

    def get_environment(env_type):
        def factory(config, train_eval):
            built.update(env_type=env_type, config=config, split=train_eval)
            return types.SimpleNamespace(init_env=lambda batch_size: FakeKitchen())

        return factory

    package = types.ModuleType("alfworld")
    package.__file__ = str(tmp_path / "pkg" / "__init__.py")
    agents = types.ModuleType("alfworld.agents")
    environment = types.ModuleType("alfworld.agents.environment")
    environment.get_environment = get_environment
    for name, module in [
        ("alfworld", package),
        ("alfworld.agents", agents),
        ("alfworld.agents.environment", environment),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    with pytest.raises(ALFWorldUnavailableError, match="game files") as caught:
        ALFWorldEnv()
    assert "alfworld-download" in str(caught.value) and "ALFWORLD_DATA" in str(caught.value)
    (tmp_path / "json_2.1.1").mkdir()
    with pytest.raises(ALFWorldUnavailableError, match="config"):
        ALFWorldEnv()
    (tmp_path / "base_config.yaml").write_text("env: {type: AlfredTWEnv}\n", encoding="utf-8")
    env = ALFWorldEnv(split="eval_out_of_distribution")
    assert built == {
        "env_type": "AlfredTWEnv",
        "config": {"env": {"type": "AlfredTWEnv"}},
        "split": "eval_out_of_distribution",
    }
    env.reset(seed=0)
    assert env.task == "put a clean mug in coffeemachine"


def test_prompt_helpers():
    scene, task = split_task(
        "You see a bed 1.\n\nYour task is to: examine a book with the desklamp."
    )
    assert (scene, task) == ("You see a bed 1.", "examine a book with the desklamp")
    assert split_task("no task here") == ("no task here", "")
    text = alfworld_prompt("s", "t", ["look"])
    assert json.dumps("look")[1:-1] in text and text.endswith("}")
