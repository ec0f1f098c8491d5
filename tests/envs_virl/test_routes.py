"""Route geometry, the JSON format, loading and validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vlrl.envs.virl.routes import (
    COMPASS,
    FORWARD,
    RouteFormatError,
    cap_straight_runs,
    compass_name,
    load_routes,
    observation_text,
    relative_turn_name,
    route_from_dict,
    route_to_dict,
    save_routes,
    side_name,
    signed_turn,
)
from vlrl.envs.virl.world import generate_routes, sample_route


def test_signed_turn_and_relative_names():
    assert signed_turn(0, 90) == 90
    assert signed_turn(0, 270) == -90
    assert signed_turn(350, 10) == pytest.approx(20)
    assert signed_turn(90, 270) == 180  # a U-turn counts as turning right by 180
    assert relative_turn_name(90) == "right"
    assert relative_turn_name(-90) == "left"
    assert relative_turn_name(45) == "slightly right"
    assert relative_turn_name(-45) == "slightly left"
    assert relative_turn_name(-30) == "slightly left"
    assert relative_turn_name(135) == "right"  # beyond 45 degrees is left/right
    assert relative_turn_name(46) == "right"


def test_compass_and_sides():
    assert [compass_name(45 * i) for i in range(8)] == list(COMPASS)
    assert compass_name(359) == "north" and compass_name(80) == "east"
    assert side_name(225, 90) == "right behind"  # Figure D.4: heading east, hotel behind right
    assert side_name(45, 0) == "right front"
    assert side_name(270, 0) == "left"
    assert side_name(180, 0) == "behind"


def test_observation_text_matches_the_figures_style():
    route = sample_route("new_york", np.random.default_rng(7))
    texts = [observation_text(p) for p in route.points]
    for point, text in zip(route.points, texts, strict=True):
        if not point.landmarks:
            assert text.startswith("No landmarks nearby")
        for landmark in point.landmarks:
            assert landmark.name in text
        assert text.endswith("You observe an intersection") == point.intersection


def test_json_round_trip_and_folder_loading(tmp_path):
    routes = generate_routes("london", 5, seed=3)
    save_routes(routes[:3], tmp_path / "a.json")
    (tmp_path / "b.jsonl").write_text(
        "\n".join(json.dumps(route_to_dict(r)) for r in routes[3:]), encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    loaded = load_routes(tmp_path)
    assert [r.route_id for r in loaded] == [r.route_id for r in routes]
    for original, back in zip(routes, loaded, strict=True):
        assert route_to_dict(original) == route_to_dict(back)
    single = load_routes(tmp_path / "a.json")
    assert len(single) == 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("points"), "points"),
        (lambda d: d.pop("instruction"), "instruction"),
        (lambda d: d["points"][-1].update(action="forward()"), "stop()"),
        (lambda d: d["points"][0].update(action="turn_direction(up)"), "turn_direction"),
        (lambda d: d["points"][0].pop("heading"), "heading"),
        (lambda d: d.update(schema="other/2"), "schema"),
        (lambda d: d["points"][0].update(images={"top": "x.png"}), "images"),
        (lambda d: d["points"][0].update(position=[1]), "position"),
        (lambda d: d["points"][0].update(roads=["north"]), "roads"),
        (lambda d: d["points"][0].update(instruction_index="first"), "instruction_index"),
        (lambda d: d["points"][0].update(instruction_index=99), "out of range"),
    ],
)
def test_bad_routes_are_refused_with_the_reason(mutate, message):
    data = route_to_dict(sample_route("new_york", np.random.default_rng(1)))
    mutate(data)
    with pytest.raises(RouteFormatError, match=message):
        route_from_dict(data)


def test_missing_and_empty_route_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_routes(tmp_path / "nope.json")
    with pytest.raises(RouteFormatError, match="no routes"):
        load_routes(tmp_path)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(RouteFormatError, match="not valid JSON"):
        load_routes(tmp_path / "bad.json")


def test_cap_straight_runs_thins_long_roads():
    route = sample_route("new_york", np.random.default_rng(2), max_straight=5)
    long_points = []
    for point in route.points:
        long_points.append(point)
        if point.action == FORWARD:
            long_points.extend([point] * 6)  # a road 7 points long
    capped = cap_straight_runs(long_points, 3)
    run = 0
    for point in capped:
        run = run + 1 if point.action == FORWARD else 0
        assert run <= 3
    assert [p.action for p in capped if p.action != FORWARD] == [
        p.action for p in route.points if p.action != FORWARD
    ]
    with pytest.raises(ValueError, match="max_straight"):
        cap_straight_runs(long_points, 0)


def test_the_documented_example_route_plays(tmp_path):
    from pathlib import Path

    from vlrl.envs.virl import VIRLEnv

    doc = (Path(__file__).resolve().parents[2] / "envs" / "virl" / "ROUTES.md").read_text()
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    (tmp_path / "demo.json").write_text(example, encoding="utf-8")
    for action_space, first in [
        ("absolute", "turn_direction(east)"),
        ("relative", "turn_direction(left)"),
    ]:
        env = VIRLEnv(routes=tmp_path / "demo.json", action_space=action_space)
        env.reset(seed=0)
        assert json.loads(env.expert_response())["action"] == first
        assert "Hotel One is on your right behind; You observe an intersection" not in env.prompt()
        while True:
            _, reward, terminated, truncated, info = env.step(env.expert_response())
            assert reward == 1.0
            if terminated or truncated:
                break
        assert info["success"] and info["num_points"] == 5
