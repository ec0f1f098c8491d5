"""Synthetic cities and routes: reproducibility, route rules, consistent action spaces."""

from __future__ import annotations

import numpy as np
import pytest
from vlrl.envs.virl.routes import FORWARD, STOP, route_to_dict, signed_turn
from vlrl.envs.virl.world import CITIES, OOD_CITIES, TRAIN_CITY, sample_route, world_for

from .helpers import walk


def _routes(city: str, count: int, seed: int, **kwargs):
    rng = np.random.default_rng(seed)
    return [sample_route(city, rng, **kwargs) for _ in range(count)]


def test_seeded_routes_reproduce_and_seeds_differ():
    a = [route_to_dict(r) for r in _routes("new_york", 20, seed=11)]
    b = [route_to_dict(r) for r in _routes("new_york", 20, seed=11)]
    c = [route_to_dict(r) for r in _routes("new_york", 20, seed=12)]
    assert a == b
    assert a != c
    assert len({str(r["points"]) for r in a}) > 15  # routes vary within one seed stream


def test_cities_differ_in_names_colours_and_layout():
    worlds = {name: world_for(name) for name in CITIES}
    assert TRAIN_CITY == "new_york" and TRAIN_CITY not in OOD_CITIES
    for name, world in worlds.items():
        assert len(world.names) == len(set(world.names)) >= 60
        for other, other_world in worlds.items():
            if other != name:
                assert not set(world.names) & set(other_world.names)
                assert CITIES[name].sky != CITIES[other].sky
    layouts = {frozenset(w.edges) for w in worlds.values()}
    assert len(layouts) >= 4


@pytest.mark.parametrize("city", sorted(CITIES))
@pytest.mark.parametrize("max_straight", [2, 5])
def test_routes_follow_the_rules(city, max_straight):
    world = world_for(city)
    for route in _routes(city, 40, seed=5, max_straight=max_straight):
        points = route.points
        assert points[-1].action == STOP
        assert points[0].action.startswith("turn_direction(")
        run = 0
        for point in points:
            run = run + 1 if point.action == FORWARD else 0
            assert run <= max_straight
        # Turns are 45 or 90 degrees, and happen at intersections (except the first).
        for i, point in enumerate(points[:-1]):
            if point.action.startswith("turn_direction("):
                turn = abs(signed_turn(point.heading, points[i + 1].heading))
                assert turn in (45.0, 90.0)
                if i > 0:
                    assert point.intersection
        # On the last road, the destination first comes into view at the stop point.
        last_road = [p for p in points[:-1] if p.instruction_index == len(route.instruction) - 1]
        seen_before = {n for p in last_road for n in p.visible_names()}
        assert route.destination in points[-1].visible_names()
        assert route.destination not in seen_before
        # The instruction names every turn's landmark with the side seen at the turn.
        for turn in route.turning_points:
            if turn["landmark"]:
                assert any(turn["landmark"] in sentence for sentence in route.instruction)
        # A turn is at the first intersection of its road, unless the sentence names a
        # landmark that no earlier intersection of the road shows.
        for k, sentence in enumerate(route.instruction[:-1]):
            if not sentence.startswith("Move forward until you reach"):
                continue
            road = [p for p in points if p.instruction_index == k][1:]
            passed = [p for p in road if p.intersection]
            if passed:
                named = [n for n in world.names if f" {n} is" in f" {sentence}"]
                assert len(named) == 1
                assert all(named[0] not in p.visible_names() for p in passed)
        positions = [p.position for p in points]
        distinct = [positions[0]] + [
            q for p, q in zip(positions, positions[1:], strict=False) if q != p
        ]
        assert len(distinct) == len(set(distinct)), "a route never revisits a point"
        for a, b in zip(points, points[1:], strict=False):
            if a.action == FORWARD:
                heading_index = int(a.heading // 45)
                assert world.step(tuple(map(int, a.position)), heading_index) == tuple(
                    map(int, b.position)
                )


@pytest.mark.parametrize("city", ["new_york", "milan", "hong_kong"])
def test_absolute_and_relative_experts_walk_the_same_route(city):
    routes = _routes(city, 60, seed=21)
    saw_slight = saw_square = False
    for route in routes:
        absolute = walk(route, "absolute")
        relative = walk(route, "relative")
        assert absolute == relative
        for (position, heading), point in zip(absolute, route.points, strict=True):
            assert position == tuple(int(c) for c in point.position)
            assert heading == point.heading
        final_position = absolute[-1][0]
        names = [lm.name for lm in world_for(city).visible(final_position)]
        assert route.destination in names
        for i, point in enumerate(route.points[:-1]):
            if point.action.startswith("turn_direction("):
                turn = abs(signed_turn(point.heading, route.points[i + 1].heading))
                saw_slight |= turn == 45.0
                saw_square |= turn == 90.0
    assert saw_slight and saw_square  # both kinds of relative turn occur


def test_bad_generator_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown V-IRL city"):
        sample_route("atlantis", rng)
    with pytest.raises(ValueError, match="max_straight"):
        sample_route("new_york", rng, max_straight=0)
    with pytest.raises(ValueError, match="min_turns"):
        sample_route("new_york", rng, min_turns=3, max_turns=1)
