"""Gymnasium environments of vlrl (installed as ``vlrl.envs``).

Importing this package registers:

==========================  =====================================================
id                          class
==========================  =====================================================
``vlrl/NumberLine-v0``      :class:`vlrl.envs.cards_env.NumberLineEnv`
``vlrl/EZPoints-v0``        :class:`vlrl.envs.cards_env.EZPointsEnv`
``vlrl/Points24-v0``        :class:`vlrl.envs.cards_env.Points24Env`
``vlrl/Blackjack-v0``       :class:`vlrl.envs.cards_env.BlackjackEnv`
``vlrl/GeneralPoints-v0``   :class:`vlrl.envs.general_points.GeneralPointsEnv`
``vlrl/VIRL-v0``            :class:`vlrl.envs.virl.VIRLEnv`
``vlrl/ALFWorld-v0``        :class:`vlrl.envs.alfworld_env.ALFWorldEnv` (needs alfworld)
==========================  =====================================================

The card games take action indices into ``env.unwrapped.action_names``;
``parse_action(env, text)`` is the post-processing f that maps a model's text to one.
GeneralPoints takes the model's whole text as its action. Every env's unwrapped object
has ``prompt(cot)``, ``expert_response(cot)``, ``answer_key`` and ``takes_text_action``.
``vlrl.envs.vector.CardsVectorEnv`` steps N card games in one C++ call with batched
rendering; ``gym.make_vec("vlrl/Points24-v0", num_envs=N)`` returns one.
"""

from __future__ import annotations

import gymnasium as gym
from vlrl.envs.parsing import choose_action, parse_action, parse_points_answer

__all__ = ["ENV_IDS", "choose_action", "parse_action", "parse_points_answer"]

ENV_IDS = {
    "vlrl/NumberLine-v0": "vlrl.envs.cards_env:NumberLineEnv",
    "vlrl/EZPoints-v0": "vlrl.envs.cards_env:EZPointsEnv",
    "vlrl/Points24-v0": "vlrl.envs.cards_env:Points24Env",
    "vlrl/Blackjack-v0": "vlrl.envs.cards_env:BlackjackEnv",
    "vlrl/GeneralPoints-v0": "vlrl.envs.general_points:GeneralPointsEnv",
    "vlrl/VIRL-v0": "vlrl.envs.virl:VIRLEnv",
    "vlrl/ALFWorld-v0": "vlrl.envs.alfworld_env:ALFWorldEnv",
}


VECTOR_ENTRY_POINTS = {
    "vlrl/NumberLine-v0": "vlrl.envs.vector:make_numberline",
    "vlrl/EZPoints-v0": "vlrl.envs.vector:make_ezpoints",
    "vlrl/Points24-v0": "vlrl.envs.vector:make_points24",
    "vlrl/Blackjack-v0": "vlrl.envs.vector:make_blackjack",
}


def _register() -> None:
    # The card games' vector entry point is the batched C++ vector env, so
    # ``gym.make_vec(id, num_envs=N)`` returns a CardsVectorEnv.
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=entry_point,
                vector_entry_point=VECTOR_ENTRY_POINTS.get(env_id),
            )


_register()
