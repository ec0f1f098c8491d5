"""Synthetic V-IRL cities and the route generator.

A city is a square lattice of street points: streets run along every ``block``-th row
and column, and some cities add diagonal avenues (which is where 45-degree turns, the
relative action space's "slightly left/right", come from). Landmarks stand in block
cells, at the centre of a unit cell next to the streets, and are visible from the
street points at that cell's corners (distance sqrt(1/2)), so a landmark is seen from
at most four points and from exactly one intersection.

Cities differ in their landmark name sets, colours (used by the street-view renderer)
and layouts; training on one and evaluating on another is the visual out-of-distribution
split. Every city's world is built deterministically from its name, and routes are
sampled from a ``numpy.random.Generator``, so a seed reproduces a route exactly.

Route rules (what makes an instruction unambiguous): a route turns only by 45 or 90
degrees (never a U-turn) and never revisits a point; each straight road has 1 to
``max_straight`` forward moves; a turn happens at the first intersection met, or at a
later one only when the instruction names a landmark that no earlier intersection of
that road shows; the destination is the first landmark that comes into view on the
last road, and the agent stops at the first point it sees it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np

from .routes import (
    FORWARD,
    STOP,
    Landmark,
    Route,
    RoutePoint,
    compass_name,
    relative_turn_name,
    side_name,
    side_phrase,
    signed_turn,
    turn_action,
)

# Heading index d (0..7) is d * 45 degrees clockwise from north; the lattice step for it.
STEPS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))

PLACE_KINDS = (
    "Cafe",
    "Hotel",
    "Bakery",
    "Museum",
    "Pharmacy",
    "Bank",
    "Library",
    "Theater",
    "Diner",
    "Market",
    "Gallery",
    "Bookshop",
    "Pizzeria",
    "Florist",
)


@dataclass(frozen=True)
class CitySpec:
    """What makes a city look and read different: names, colours, layout."""

    name: str
    words: tuple[str, ...]
    size: int
    block: int
    diagonals: tuple[int, ...]  # avenues y - x = c (running northeast-southwest)
    anti_diagonals: tuple[int, ...]  # avenues x + y = c (running northwest-southeast)
    landmark_density: float
    sky: tuple[int, int, int]
    ground: tuple[int, int, int]
    road: tuple[int, int, int]
    buildings: tuple[tuple[int, int, int], ...]
    signs: tuple[tuple[int, int, int], ...]


CITIES: dict[str, CitySpec] = {
    spec.name: spec
    for spec in (
        CitySpec(
            name="new_york",
            words=(
                "Hudson",
                "Empire",
                "Liberty",
                "Broadway",
                "Harlem",
                "Brooklyn",
                "Chelsea",
                "Gotham",
                "Madison",
                "Lexington",
                "Astor",
                "Bowery",
                "Tribeca",
                "Soho",
                "Knickerbocker",
                "Stuyvesant",
                "Gramercy",
                "Battery",
                "Union",
                "Carnegie",
            ),
            size=17,
            block=2,
            diagonals=(0,),
            anti_diagonals=(),
            landmark_density=0.45,
            sky=(150, 190, 235),
            ground=(120, 120, 125),
            road=(60, 60, 66),
            buildings=((150, 90, 70), (170, 160, 150), (110, 100, 95), (190, 175, 140)),
            signs=((220, 40, 40), (30, 90, 200), (250, 200, 30), (20, 140, 70)),
        ),
        CitySpec(
            name="london",
            words=(
                "Thames",
                "Camden",
                "Soho Square",
                "Mayfair",
                "Kensington",
                "Chelsea Bridge",
                "Westminster",
                "Hyde",
                "Regent",
                "Baker",
                "Piccadilly",
                "Strand",
                "Holborn",
                "Islington",
                "Greenwich",
                "Brixton",
                "Victoria",
                "Marylebone",
                "Covent",
                "Fleet",
            ),
            size=16,
            block=3,
            diagonals=(),
            anti_diagonals=(15,),
            landmark_density=0.5,
            sky=(170, 180, 190),
            ground=(105, 110, 100),
            road=(50, 52, 56),
            buildings=((120, 70, 60), (200, 195, 180), (90, 90, 100), (150, 130, 110)),
            signs=((10, 40, 110), (150, 20, 40), (10, 90, 60), (230, 230, 230)),
        ),
        CitySpec(
            name="milan",
            words=(
                "Duomo",
                "Brera",
                "Navigli",
                "Sforza",
                "Scala",
                "Porta Nuova",
                "Giardini",
                "Magenta",
                "Tortona",
                "Isola",
                "Ticinese",
                "Vittoria",
                "Sempione",
                "Garibaldi",
                "Loreto",
                "Moscova",
                "Cadorna",
                "Manzoni",
                "Dante",
                "Verdi",
            ),
            size=17,
            block=2,
            diagonals=(-4,),
            anti_diagonals=(20,),
            landmark_density=0.4,
            sky=(240, 200, 150),
            ground=(190, 170, 140),
            road=(90, 80, 70),
            buildings=((220, 160, 100), (240, 220, 180), (200, 120, 90), (170, 150, 120)),
            signs=((0, 120, 110), (120, 30, 90), (240, 240, 220), (200, 90, 20)),
        ),
        CitySpec(
            name="hong_kong",
            words=(
                "Victoria Peak",
                "Kowloon",
                "Harbour",
                "Lantau",
                "Mong Kok",
                "Wan Chai",
                "Causeway",
                "Stanley",
                "Jade",
                "Golden Dragon",
                "Lotus",
                "Star Ferry",
                "Temple",
                "Nathan",
                "Tsim Sha",
                "Aberdeen",
                "Sheung Wan",
                "Lamma",
                "Repulse",
                "Central",
            ),
            size=16,
            block=3,
            diagonals=(2,),
            anti_diagonals=(),
            landmark_density=0.55,
            sky=(120, 130, 170),
            ground=(80, 85, 95),
            road=(35, 35, 45),
            buildings=((70, 80, 110), (140, 150, 170), (60, 60, 70), (100, 110, 140)),
            signs=((255, 60, 160), (40, 220, 220), (250, 240, 60), (255, 120, 30)),
        ),
        CitySpec(
            name="lagos",
            words=(
                "Lekki",
                "Ikoyi",
                "Marina",
                "Yaba",
                "Surulere",
                "Ikeja",
                "Apapa",
                "Agege",
                "Eko",
                "Balogun",
                "Oshodi",
                "Ajah",
                "Festac",
                "Obalende",
                "Tafawa",
                "Onikan",
                "Ebute",
                "Idumota",
                "Maryland",
                "Ojota",
            ),
            size=17,
            block=2,
            diagonals=(),
            anti_diagonals=(16,),
            landmark_density=0.45,
            sky=(250, 225, 160),
            ground=(170, 120, 80),
            road=(80, 70, 60),
            buildings=((230, 210, 170), (150, 170, 90), (200, 100, 60), (240, 240, 230)),
            signs=((0, 135, 80), (250, 250, 250), (30, 30, 30), (255, 190, 0)),
        ),
    )
}

TRAIN_CITY = "new_york"
OOD_CITIES = tuple(name for name in CITIES if name != TRAIN_CITY)


class World:
    """The street graph and landmarks of one synthetic city (deterministic from its spec)."""

    def __init__(self, spec: CitySpec):
        self.spec = spec
        self.edges: dict[tuple[int, int], set[int]] = {}
        self._add_streets()
        self.landmarks: dict[tuple[float, float], str] = {}
        self._place_landmarks(np.random.default_rng(zlib.crc32(spec.name.encode())))
        self.points = sorted(self.edges)
        self.names = sorted(self.landmarks.values())

    # -- construction ---------------------------------------------------------------
    def _link(self, a: tuple[int, int], direction: int) -> None:
        dx, dy = STEPS[direction]
        b = (a[0] + dx, a[1] + dy)
        if not all(0 <= c < self.spec.size for c in (*a, *b)):
            return
        self.edges.setdefault(a, set()).add(direction)
        self.edges.setdefault(b, set()).add((direction + 4) % 8)

    def _add_streets(self) -> None:
        n, block = self.spec.size, self.spec.block
        for i in range(0, n, block):
            for j in range(n - 1):
                self._link((i, j), 0)  # a north-south street along x = i
                self._link((j, i), 2)  # an east-west street along y = i
        for offset in self.spec.diagonals:
            for x in range(n):
                self._link((x, x + offset), 1)
        for total in self.spec.anti_diagonals:
            for x in range(n):
                self._link((x, total - x), 3)

    def _diagonal_cells(self) -> set[tuple[float, float]]:
        cells = set()
        for (x, y), dirs in self.edges.items():
            for direction in dirs & {1, 3, 5, 7}:
                dx, dy = STEPS[direction]
                cells.add((x + dx / 2, y + dy / 2))
        return cells

    def _place_landmarks(self, rng: np.random.Generator) -> None:
        blocked = self._diagonal_cells()
        cells = []
        for i in range(self.spec.size - 1):
            for j in range(self.spec.size - 1):
                centre = (i + 0.5, j + 0.5)
                corners = [(i, j), (i + 1, j), (i, j + 1), (i + 1, j + 1)]
                if centre not in blocked and any(c in self.edges for c in corners):
                    cells.append(centre)
        names = [f"{word} {kind}" for word in self.spec.words for kind in PLACE_KINDS]
        chosen = rng.random(len(cells)) < self.spec.landmark_density
        picked = [cell for cell, keep in zip(cells, chosen, strict=True) if keep]
        order = rng.permutation(len(names))[: len(picked)]
        for cell, name_index in zip(picked, order, strict=False):
            self.landmarks[cell] = names[int(name_index)]

    # -- queries --------------------------------------------------------------------
    def is_intersection(self, point: tuple[int, int]) -> bool:
        """A point where the agent can choose a way (or must turn): not a plain street."""
        dirs = self.edges.get(point, set())
        if len(dirs) == 2:
            a, b = sorted(dirs)
            return b - a != 4
        return len(dirs) >= 3

    def visible(self, point: tuple[int, int]) -> list[Landmark]:
        """Landmarks seen from ``point`` (sorted by bearing), with absolute bearings."""
        seen = []
        for dx in (-0.5, 0.5):
            for dy in (-0.5, 0.5):
                name = self.landmarks.get((point[0] + dx, point[1] + dy))
                if name is not None:
                    bearing = math.degrees(math.atan2(dx, dy)) % 360.0
                    seen.append(Landmark(name, bearing))
        return sorted(seen, key=lambda landmark: landmark.bearing)

    def step(self, point: tuple[int, int], direction: int) -> tuple[int, int] | None:
        """The next point along ``direction``, or None when no street goes that way."""
        if direction not in self.edges.get(point, set()):
            return None
        dx, dy = STEPS[direction]
        return (point[0] + dx, point[1] + dy)

    def roads(self, point: tuple[int, int]) -> tuple[float, ...]:
        """Bearings of the streets leaving ``point``."""
        return tuple(45.0 * d for d in sorted(self.edges.get(point, set())))


@cache
def world_for(city: str) -> World:
    """The (cached) world of a named city."""
    if city not in CITIES:
        raise ValueError(f"unknown V-IRL city {city!r}; known cities: {sorted(CITIES)}")
    return World(CITIES[city])


@dataclass
class _Segment:
    path: list[tuple[int, int]]  # points after the start, the last is the turning point
    direction: int
    landmark: Landmark | None
    turn_to: int


def _turn_options(world: World, point: tuple[int, int], heading: int, visited: set) -> list[int]:
    options = []
    for direction in sorted(world.edges.get(point, set())):
        turn = (direction - heading) % 8
        if turn in (1, 2, 6, 7) and world.step(point, direction) not in visited:
            options.append(direction)
    return options


def _sample_segment(
    world: World,
    rng: np.random.Generator,
    start: tuple[int, int],
    direction: int,
    max_straight: int,
    visited: set,
) -> _Segment | None:
    path: list[tuple[int, int]] = []
    point = start
    candidates: list[tuple[int, Landmark | None, list[int]]] = []
    passed_intersections: list[tuple[int, int]] = []
    for length in range(1, max_straight + 1):
        point = world.step(point, direction)
        if point is None or point in visited:
            break
        path.append(point)
        if not world.is_intersection(point):
            continue
        options = _turn_options(world, point, direction, visited | set(path))
        seen_before = {lm.name for p in passed_intersections for lm in world.visible(p)}
        marks = [lm for lm in world.visible(point) if lm.name not in seen_before]
        if options and (not passed_intersections or marks):
            if passed_intersections:
                pick: Landmark | None = marks[int(rng.integers(len(marks)))]
            elif marks and rng.random() < 0.7:
                pick = marks[int(rng.integers(len(marks)))]
            else:
                pick = None
            candidates.append((length, pick, options))
        passed_intersections.append(point)
    if not candidates:
        return None
    length, landmark, options = candidates[int(rng.integers(len(candidates)))]
    return _Segment(path[:length], direction, landmark, options[int(rng.integers(len(options)))])


def sample_route(
    city: str,
    rng: np.random.Generator,
    *,
    max_straight: int = 5,
    min_turns: int = 1,
    max_turns: int = 3,
    route_id: str | None = None,
) -> Route:
    """Sample one route in ``city`` with ``rng`` (same generator state, same route)."""
    if max_straight < 1:
        raise ValueError(f"max_straight must be a positive integer, got {max_straight}")
    if not 0 <= min_turns <= max_turns:
        raise ValueError(f"need 0 <= min_turns <= max_turns, got {min_turns}, {max_turns}")
    world = world_for(city)
    for _attempt in range(1000):
        route = _try_route(world, rng, max_straight, min_turns, max_turns)
        if route is not None:
            route.route_id = route_id or f"{city}-synthetic"
            return route
    raise RuntimeError(f"could not sample a V-IRL route in {city} with max_straight={max_straight}")


def _try_route(
    world: World, rng: np.random.Generator, max_straight: int, min_turns: int, max_turns: int
) -> Route | None:
    start = world.points[int(rng.integers(len(world.points)))]
    directions = sorted(world.edges[start])
    direction = directions[int(rng.integers(len(directions)))]
    first_turn = (-2, -1, 1, 2)[int(rng.integers(4))]
    initial_heading = (direction - first_turn) % 8
    visited = {start}
    segments: list[_Segment] = []
    position = start
    for _ in range(int(rng.integers(min_turns, max_turns + 1))):
        segment = _sample_segment(world, rng, position, direction, max_straight, visited)
        if segment is None:
            return None
        segments.append(segment)
        visited.update(segment.path)
        position, direction = segment.path[-1], segment.turn_to
    # Last road: walk until a landmark not seen before on this road comes into view.
    named = {s.landmark.name for s in segments if s.landmark is not None}
    seen = {lm.name for lm in world.visible(position)} | named
    final_path: list[tuple[int, int]] = []
    destination: Landmark | None = None
    point: tuple[int, int] | None = position
    for _ in range(max_straight):
        point = world.step(point, direction)
        if point is None or point in visited:
            return None
        final_path.append(point)
        fresh = [lm for lm in world.visible(point) if lm.name not in seen]
        if fresh:
            destination = fresh[int(rng.integers(len(fresh)))]
            break
        seen.update(lm.name for lm in world.visible(point))
    if destination is None:
        return None
    return _build_route(world, start, initial_heading, segments, final_path, destination)


def _build_route(
    world: World,
    start: tuple[int, int],
    initial_heading: int,
    segments: list[_Segment],
    final_path: list[tuple[int, int]],
    destination: Landmark,
) -> Route:
    first = segments[0].direction if segments else None
    points: list[RoutePoint] = []
    instruction: list[str] = []
    turning_points = []

    def add(position, heading: int, action: str, sentence: int) -> None:
        points.append(
            RoutePoint(
                heading=45.0 * heading,
                action=action,
                intersection=world.is_intersection(position),
                landmarks=tuple(world.visible(position)),
                position=(float(position[0]), float(position[1])),
                roads=world.roads(position),
                instruction_index=sentence,
            )
        )

    def turn_sentence(from_heading: int, to_heading: int, first_sentence: bool) -> str:
        relative = relative_turn_name(signed_turn(45.0 * from_heading, 45.0 * to_heading))
        sentence = f"turn {relative} to face {compass_name(45.0 * to_heading)}."
        return f"First, {sentence}" if first_sentence else sentence[0].upper() + sentence[1:]

    heading = initial_heading
    first_direction = first if first is not None else _final_direction(start, final_path)
    instruction.append(turn_sentence(heading, first_direction, True))
    add(start, heading, turn_action(compass_name(45.0 * first_direction)), 0)
    heading, position = first_direction, start
    for segment in segments:
        turn_point = segment.path[-1]
        if segment.landmark is not None:
            side = side_name(segment.landmark.bearing, 45.0 * heading)
            move = (
                "Move forward until you reach the next intersection where "
                f"{segment.landmark.name} is {side_phrase(side)}."
            )
        else:
            side = None
            move = "Move forward until you reach the next intersection."
        instruction.append(move)
        move_index = len(instruction) - 1
        for p in [position, *segment.path[:-1]]:
            add(p, heading, FORWARD, move_index)
        instruction.append(turn_sentence(heading, segment.turn_to, False))
        add(turn_point, heading, turn_action(compass_name(45.0 * segment.turn_to)), move_index + 1)
        turning_points.append(
            {
                "position": [float(turn_point[0]), float(turn_point[1])],
                "landmark": None if segment.landmark is None else segment.landmark.name,
                "side": side,
                "turn": compass_name(45.0 * segment.turn_to),
            }
        )
        heading, position = segment.turn_to, turn_point
    stop_point = final_path[-1]
    side = side_name(destination.bearing, 45.0 * heading)
    instruction.append(
        f"Move forward until the destination {destination.name} is {side_phrase(side)}."
    )
    for p in [position, *final_path[:-1]]:
        add(p, heading, FORWARD, len(instruction) - 1)
    add(stop_point, heading, STOP, len(instruction) - 1)
    return Route(
        route_id="",
        city=world.spec.name,
        instruction=instruction,
        points=points,
        destination=destination.name,
        start="Start",
        turning_points=turning_points,
    )


def _final_direction(start: tuple[int, int], final_path: list[tuple[int, int]]) -> int:
    dx, dy = final_path[0][0] - start[0], final_path[0][1] - start[1]
    return STEPS.index((dx, dy))


def generate_routes(
    city: str,
    count: int,
    seed: int,
    *,
    max_straight: int = 5,
    min_turns: int = 1,
    max_turns: int = 3,
) -> list[Route]:
    """A fixed database of ``count`` routes in ``city`` (ids ``<city>-<seed>-<index>``)."""
    rng = np.random.default_rng(seed)
    return [
        sample_route(
            city,
            rng,
            max_straight=max_straight,
            min_turns=min_turns,
            max_turns=max_turns,
            route_id=f"{city}-{seed}-{index:05d}",
        )
        for index in range(count)
    ]
