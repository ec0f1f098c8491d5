"""Shared helpers of the V-IRL tests: registration check and a kinematic walker."""

from __future__ import annotations

import gymnasium as gym
from vlrl.envs.virl.routes import (
    COMPASS,
    FORWARD,
    STOP,
    Route,
    expert_action,
    relative_turn_degrees,
)
from vlrl.envs.virl.world import world_for

NAVIGATION_IDS = ("vlrl/VIRL-v0", "vlrl/ALFWorld-v0")


def ensure_registered() -> None:
    """Import ``vlrl.envs`` (which registers the ids) and check that it did."""
    import vlrl.envs  # noqa: F401

    missing = [env_id for env_id in NAVIGATION_IDS if env_id not in gym.registry]
    assert not missing, f"vlrl.envs did not register {missing}"


def walk(route: Route, action_space: str) -> list[tuple[tuple[int, int], float]]:
    """Play the expert's actions kinematically on the city's street graph.

    Returns the (position, heading) before each action; turns apply the action's own
    meaning (a compass heading, or a 90/45 degree rotation), forward() follows a street.
    """
    world = world_for(route.city)
    position = tuple(int(c) for c in route.points[0].position)
    heading = route.points[0].heading
    states = []
    for index in range(len(route.points)):
        states.append((position, heading))
        action = expert_action(route, index, action_space)
        if action == FORWARD:
            step = world.step(position, int(round(heading / 45.0)) % 8)
            assert step is not None, f"forward() off the streets at {position} facing {heading}"
            position = step
        elif action == STOP:
            assert index == len(route.points) - 1
        else:
            target = action[len("turn_direction(") : -1]
            if target in COMPASS:
                heading = 45.0 * COMPASS.index(target)
            else:
                heading = (heading + relative_turn_degrees(target)) % 360.0
    return states
