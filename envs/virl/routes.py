"""The V-IRL route: data classes, JSON loading and saving, and the geometry of headings.

A route is the unit the navigation environment plays: an instruction to follow and the
expert trajectory through a sequence of decision points. The JSON layout is documented
in the package docstring (``vlrl.envs.virl``) and in ``envs/virl/ROUTES.md``; this module
is the one place that reads, validates and writes it.

Headings and bearings are degrees clockwise from north (0 north, 90 east, 180 south,
270 west). A landmark's side is its bearing relative to the agent's heading, binned into
eight 45-degree sectors ("front", "right front", "right", "right behind", "behind",
"left behind", "left", "left front").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROUTE_SCHEMA = "vlrl.virl.route/1"

COMPASS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
RELATIVE_TURNS = ("left", "right", "slightly left", "slightly right")
SIDES = (
    "front",
    "right front",
    "right",
    "right behind",
    "behind",
    "left behind",
    "left",
    "left front",
)
VIEW_NAMES = ("front", "right", "back", "left")

FORWARD = "forward()"
STOP = "stop()"


class RouteFormatError(ValueError):
    """A route file does not follow the documented JSON layout."""


def wrap_degrees(angle: float) -> float:
    """``angle`` mapped into [0, 360)."""
    return float(angle) % 360.0


def signed_turn(from_heading: float, to_heading: float) -> float:
    """Heading change in (-180, 180]; positive turns clockwise (to the right)."""
    delta = (float(to_heading) - float(from_heading)) % 360.0
    return delta - 360.0 if delta > 180.0 else delta


def compass_name(heading: float) -> str:
    """The nearest of the eight compass headings."""
    return COMPASS[int(math.floor(wrap_degrees(heading) / 45.0 + 0.5)) % 8]


def compass_degrees(name: str) -> float:
    """Degrees of a compass heading name ("north" -> 0.0)."""
    return 45.0 * COMPASS.index(name)


def relative_turn_name(delta: float) -> str:
    """Relative label of a heading change: beyond 45 degrees left/right, within it slightly."""
    side = "right" if delta > 0 else "left"
    return side if abs(delta) > 45.0 + 1e-6 else f"slightly {side}"


def relative_turn_degrees(name: str) -> float:
    """Rotation a relative turn applies: 90 degrees for left/right, 45 for slightly."""
    sign = 1.0 if name.endswith("right") else -1.0
    return sign * (45.0 if name.startswith("slightly") else 90.0)


def side_name(bearing: float, heading: float) -> str:
    """Which of the eight sides ``bearing`` lies on for an agent facing ``heading``."""
    relative = wrap_degrees(bearing - heading)
    return SIDES[int(math.floor(relative / 45.0 + 0.5)) % 8]


def side_phrase(side: str) -> str:
    """How a sentence places a landmark: "on your right front", "in front of you"."""
    if side == "front":
        return "in front of you"
    if side == "behind":
        return "behind you"
    return f"on your {side}"


def turn_action(target: str) -> str:
    """The action text for a turn: ``turn_direction(x)``."""
    return f"turn_direction({target})"


@dataclass(frozen=True)
class Landmark:
    """A landmark seen from a point: its name and absolute bearing from that point."""

    name: str
    bearing: float


@dataclass
class RoutePoint:
    """One decision point of the expert trajectory (one observation, one expert action).

    ``action`` is the expert's absolute-space action. ``heading`` is the agent's heading
    when it makes the decision. ``observation`` overrides the text the environment
    otherwise builds from ``landmarks`` and ``intersection``. ``images`` maps a view name
    ("front", "right", "back", "left") or "grid" to an image path.
    """

    heading: float
    action: str
    intersection: bool = False
    landmarks: tuple[Landmark, ...] = ()
    position: tuple[float, float] | None = None
    roads: tuple[float, ...] = ()
    instruction_index: int | None = None
    observation: str | None = None
    images: dict[str, str] = field(default_factory=dict)

    def visible_names(self) -> list[str]:
        """Names of the landmarks visible at this point."""
        return [landmark.name for landmark in self.landmarks]


@dataclass
class Route:
    """A whole route: instruction sentences and the expert trajectory's decision points."""

    route_id: str
    city: str
    instruction: list[str]
    points: list[RoutePoint]
    destination: str
    start: str = "Start"
    turning_points: list[dict[str, Any]] = field(default_factory=list)
    base_dir: Path | None = None

    def landmark_names(self) -> list[str]:
        """Every landmark name the route mentions or shows, longest first (for matching)."""
        names = {self.destination}
        for point in self.points:
            names.update(point.visible_names())
        for turn in self.turning_points:
            if turn.get("landmark"):
                names.add(str(turn["landmark"]))
        names.discard("")
        return sorted(names, key=lambda name: (-len(name), name))


def observation_text(point: RoutePoint) -> str:
    """The oracle observation text at a point, in the figures' style.

    For example "Hotel 32One is on your right behind; You observe an intersection", or
    "No landmarks nearby" when nothing is visible.
    """
    if point.observation is not None:
        return point.observation
    parts = [
        f"{landmark.name} is {side_phrase(side_name(landmark.bearing, point.heading))}"
        for landmark in point.landmarks
    ]
    if not parts:
        parts = ["No landmarks nearby"]
    if point.intersection:
        parts.append("You observe an intersection")
    return "; ".join(parts)


def target_heading(route: Route, index: int) -> float | None:
    """Heading a turn at point ``index`` ends in (the next point's heading when known)."""
    point = route.points[index]
    if not point.action.startswith("turn_direction("):
        return None
    if index + 1 < len(route.points):
        return route.points[index + 1].heading
    return compass_degrees(point.action[len("turn_direction(") : -1])


def expert_action(route: Route, index: int, action_space: str) -> str:
    """The expert action at point ``index`` in the "absolute" or "relative" action space."""
    point = route.points[index]
    if action_space == "absolute" or not point.action.startswith("turn_direction("):
        return point.action
    heading_after = target_heading(route, index)
    assert heading_after is not None
    return turn_action(relative_turn_name(signed_turn(point.heading, heading_after)))


def cap_straight_runs(points: list[RoutePoint], max_straight: int) -> list[RoutePoint]:
    """Keep at most ``max_straight`` forward() points in any run of consecutive ones.

    Long straight roads of loaded routes are thinned evenly (the first forward point of a
    run is always kept, so the run still starts where the turn left the agent); the
    decision point that ends the run is untouched.
    """
    if max_straight < 1:
        raise ValueError(f"max_straight must be a positive integer, got {max_straight}")
    kept: list[RoutePoint] = []
    run: list[RoutePoint] = []

    def flush() -> None:
        if len(run) <= max_straight:
            kept.extend(run)
        else:
            step = (len(run) - 1) / max(1, max_straight - 1)
            picks = sorted({round(i * step) for i in range(max_straight)})
            kept.extend(run[i] for i in picks)
        run.clear()

    for point in points:
        if point.action == FORWARD:
            run.append(point)
        else:
            flush()
            kept.append(point)
    flush()
    return kept


# ---------------------------------------------------------------------------------------
# JSON


def _require(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise RouteFormatError(f"{where}: missing required key {key!r}")
    return record[key]


def _valid_action(action: Any, where: str) -> str:
    if not isinstance(action, str):
        raise RouteFormatError(f"{where}: 'action' must be a string, got {action!r}")
    action = action.strip()
    if action in (FORWARD, STOP):
        return action
    if action.startswith("turn_direction(") and action.endswith(")"):
        target = action[len("turn_direction(") : -1].strip().lower()
        if target in COMPASS:
            return turn_action(target)
    raise RouteFormatError(
        f"{where}: action {action!r} is not forward(), stop() or turn_direction(<compass "
        f"heading>) with a heading among {list(COMPASS)}"
    )


def route_from_dict(data: dict[str, Any], base_dir: Path | None = None) -> Route:
    """Build a :class:`Route` from its JSON object, checking the layout."""
    if not isinstance(data, dict):
        raise RouteFormatError(f"a route must be a JSON object, got {type(data).__name__}")
    route_id = str(data.get("id", "route"))
    where = f"route {route_id!r}"
    schema = data.get("schema", ROUTE_SCHEMA)
    if schema != ROUTE_SCHEMA:
        raise RouteFormatError(f"{where}: schema {schema!r} is not {ROUTE_SCHEMA!r}")
    instruction = _require(data, "instruction", where)
    if isinstance(instruction, str):
        instruction = [line for line in instruction.splitlines() if line.strip()]
    if not isinstance(instruction, list) or not instruction:
        raise RouteFormatError(f"{where}: 'instruction' must be a non-empty list of sentences")
    raw_points = _require(data, "points", where)
    if not isinstance(raw_points, list) or not raw_points:
        raise RouteFormatError(f"{where}: 'points' must be a non-empty list")
    points: list[RoutePoint] = []
    for i, raw in enumerate(raw_points):
        at = f"{where} point {i}"
        if not isinstance(raw, dict):
            raise RouteFormatError(f"{at}: must be a JSON object")
        try:
            heading = wrap_degrees(float(_require(raw, "heading", at)))
            landmarks = tuple(
                Landmark(str(_require(lm, "name", at)), wrap_degrees(float(lm["bearing"])))
                for lm in raw.get("landmarks", [])
            )
        except (TypeError, ValueError, KeyError) as error:
            raise RouteFormatError(f"{at}: bad heading or landmark ({error})") from error
        try:
            position = raw.get("position")
            position = None if position is None else (float(position[0]), float(position[1]))
            roads = tuple(wrap_degrees(float(r)) for r in raw.get("roads", []))
            index = raw.get("instruction_index")
            index = None if index is None else int(index)
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise RouteFormatError(
                f"{at}: bad position, roads or instruction_index ({error})"
            ) from error
        images = raw.get("images", {}) or {}
        if not isinstance(images, dict) or any(key not in (*VIEW_NAMES, "grid") for key in images):
            raise RouteFormatError(f"{at}: 'images' keys must be among {[*VIEW_NAMES, 'grid']}")
        if index is not None and not 0 <= index < len(instruction):
            raise RouteFormatError(f"{at}: instruction_index {index} out of range")
        points.append(
            RoutePoint(
                heading=heading,
                action=_valid_action(_require(raw, "action", at), at),
                intersection=bool(raw.get("intersection", False)),
                landmarks=landmarks,
                position=position,
                roads=roads,
                instruction_index=index,
                observation=raw.get("observation"),
                images={str(k): str(v) for k, v in images.items()},
            )
        )
    if points[-1].action != STOP:
        raise RouteFormatError(f"{where}: the last point's action must be stop()")
    if any(point.action == STOP for point in points[:-1]):
        raise RouteFormatError(f"{where}: stop() may only be the last point's action")
    return Route(
        route_id=route_id,
        city=str(data.get("city", "unknown")),
        instruction=[str(line) for line in instruction],
        points=points,
        destination=str(_require(data, "destination", where)),
        start=str(data.get("start", "Start")),
        turning_points=list(data.get("turning_points", [])),
        base_dir=base_dir,
    )


def route_to_dict(route: Route) -> dict[str, Any]:
    """The JSON object of a route (inverse of :func:`route_from_dict`)."""
    points = []
    for point in route.points:
        record: dict[str, Any] = {
            "heading": point.heading,
            "action": point.action,
            "intersection": point.intersection,
            "landmarks": [{"name": lm.name, "bearing": lm.bearing} for lm in point.landmarks],
        }
        if point.position is not None:
            record["position"] = list(point.position)
        if point.roads:
            record["roads"] = list(point.roads)
        if point.instruction_index is not None:
            record["instruction_index"] = point.instruction_index
        if point.observation is not None:
            record["observation"] = point.observation
        if point.images:
            record["images"] = dict(point.images)
        points.append(record)
    return {
        "schema": ROUTE_SCHEMA,
        "id": route.route_id,
        "city": route.city,
        "start": route.start,
        "destination": route.destination,
        "instruction": list(route.instruction),
        "turning_points": list(route.turning_points),
        "points": points,
    }


def load_routes(path: str | Path) -> list[Route]:
    """Load routes from a JSON file (one route or a list), a JSONL file, or a folder of them.

    Folders are read in sorted file-name order so the route order (and so a seeded
    episode) does not depend on the file system.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"V-IRL routes: {path} does not exist")
    files = (
        sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
        if path.is_dir()
        else [path]
    )
    routes: list[Route] = []
    for file in files:
        text = file.read_text(encoding="utf-8")
        try:
            if file.suffix == ".jsonl":
                records = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                loaded = json.loads(text)
                records = loaded if isinstance(loaded, list) else [loaded]
        except json.JSONDecodeError as error:
            raise RouteFormatError(f"{file}: not valid JSON ({error})") from error
        routes.extend(route_from_dict(record, base_dir=file.parent) for record in records)
    if not routes:
        raise RouteFormatError(f"V-IRL routes: no routes found in {path}")
    return routes


def save_routes(routes: list[Route], path: str | Path) -> None:
    """Write routes as one JSON list (readable back with :func:`load_routes`)."""
    Path(path).write_text(
        json.dumps([route_to_dict(route) for route in routes], indent=1, ensure_ascii=False),
        encoding="utf-8",
    )
