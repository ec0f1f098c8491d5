"""V-IRL navigation (``vlrl/VIRL-v0``): routes, a synthetic world, street views, the env.

The dissertation's second task (Section 5.4, Appendix D.2): follow a route's
instructions one decision point at a time, answering in JSON, with a verifier that
allows ``max_verify`` tries per point. The real V-IRL street-view data is not
downloadable here, so the package generates its own cities (``world``) and renders
2x2 street-view grids with landmark signboards (``render``); it also loads real or
hand-made routes written in the JSON format below.

Route JSON (schema ``vlrl.virl.route/1``; a file holds one route object, a list of
them, or one per line in ``.jsonl``; a folder holds such files; full description in
``envs/virl/ROUTES.md``)::

    {
      "schema": "vlrl.virl.route/1",            # optional, checked when present
      "id": "new_york-0-00042",                 # optional
      "city": "new_york",                       # colours for rendered views
      "start": "Start",                         # optional label
      "destination": "Hudson Florist",          # required
      "instruction": ["First, turn left to face east.", "..."],   # required
      "turning_points": [{"position": [4, 6], "landmark": "Harlem Diner",
                          "side": "right front", "turn": "north"}],   # optional
      "points": [                               # required: the expert trajectory
        {"heading": 0.0,                        # required: degrees clockwise from north
         "action": "turn_direction(east)",      # required: the expert's absolute action
         "intersection": false,
         "landmarks": [{"name": "Harlem Diner", "bearing": 225.0}],  # absolute bearings
         "position": [4.0, 5.0],                # optional
         "roads": [0.0, 180.0],                 # optional: street bearings (rendering)
         "instruction_index": 0,                # optional: sentence being carried out
         "observation": "...",                  # optional: overrides the built text
         "images": {"front": "a.png", "right": "b.png", "back": "c.png",
                    "left": "d.png"}            # optional ("grid": one 2x2 image);
        }                                       #   paths relative to the JSON file
      ]
    }

Each point is one decision (one observation, one expert action): a turn and the
forward() after it happen at the same position. The last point's action is stop().
The relative action space's expert turns come from the change between a point's
heading and the next point's heading (beyond 45 degrees: left/right; within: slightly).

Public API: :class:`VIRLEnv`, :func:`load_routes`, :func:`save_routes`,
:func:`sample_route`, :func:`generate_routes`, :func:`render_point`,
:func:`parse_navigation_answer`, ``CITIES``, ``TRAIN_CITY``, ``OOD_CITIES``.
"""

from .answer import NavigationAnswer, action_strings, parse_navigation_answer
from .env import VIRLEnv
from .render import render_point
from .routes import (
    ROUTE_SCHEMA,
    Landmark,
    Route,
    RouteFormatError,
    RoutePoint,
    expert_action,
    load_routes,
    observation_text,
    route_from_dict,
    route_to_dict,
    save_routes,
)
from .world import CITIES, OOD_CITIES, TRAIN_CITY, generate_routes, sample_route, world_for

__all__ = [
    "CITIES",
    "OOD_CITIES",
    "ROUTE_SCHEMA",
    "TRAIN_CITY",
    "Landmark",
    "NavigationAnswer",
    "Route",
    "RouteFormatError",
    "RoutePoint",
    "VIRLEnv",
    "action_strings",
    "expert_action",
    "generate_routes",
    "load_routes",
    "observation_text",
    "parse_navigation_answer",
    "render_point",
    "route_from_dict",
    "route_to_dict",
    "sample_route",
    "save_routes",
    "world_for",
]
