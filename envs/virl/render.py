"""Street-view rendering for V-IRL-VL: a 2x2 grid of views with landmark signboards.

The grid is laid out as the prompt describes it: ``[front, right / back, left]``, each
panel the view 90 degrees wide around its heading. A panel shows sky, ground, the
streets leaving the point (drawn as roads converging on the horizon, at the angle they
leave at), a row of buildings in the city's colours, and every visible landmark as a
signboard with its name in big letters, placed left-to-right by its bearing inside the
view. The same point always renders to the same pixels (the building row is drawn from a
hash of the point, not from a random generator), and different cities differ in colours
and names, which is the visual out-of-distribution split.

Loaded routes may carry their own street-view images per point (``images`` in the route
JSON: "grid" for a ready 2x2 image, or the four views); those are used instead.
Text uses Pillow's bundled font (``ImageFont.load_default(size=...)``), no system fonts.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .routes import VIEW_NAMES, RoutePoint, signed_turn
from .world import CITIES, CitySpec

DEFAULT_SPEC = CITIES["new_york"]
# Panels in the grid, in the prompt's reading order, with their offset from the heading.
PANEL_OFFSETS = {"front": 0.0, "right": 90.0, "back": 180.0, "left": 270.0}
PANEL_CORNERS = {"front": (0, 0), "right": (0, 1), "back": (1, 0), "left": (1, 1)}
# Below this panel size a view label would hide the view; the prompt states the layout.
MIN_LABELLED_PANEL = 96


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(6, int(size)))


def _stable_hash(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode("utf-8"))


def _wrap(name: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Split a name into at most two lines that fit ``width`` (at a word boundary)."""
    if font.getlength(name) <= width or " " not in name:
        return [name]
    words = name.split(" ")
    best = [name]
    best_width = float("inf")
    for cut in range(1, len(words)):
        lines = [" ".join(words[:cut]), " ".join(words[cut:])]
        widest = max(font.getlength(line) for line in lines)
        if widest < best_width:
            best, best_width = lines, widest
    return best


def _draw_sign(draw: ImageDraw.ImageDraw, name: str, centre_x: float, panel: int, spec) -> None:
    """A signboard with ``name``: as big as fits half the panel width."""
    # Small panels (a tiny VLM's input) give the sign the whole width: legibility first.
    max_width = int(panel * 0.58) if panel >= 96 else panel - 2
    size = max(6, panel // 7)
    while True:
        font = _font(size)
        lines = _wrap(name, font, max_width - 6)
        widest = max(font.getlength(line) for line in lines)
        if widest <= max_width - 6 or size <= 6:
            break
        size -= 1
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    width = int(widest) + 8
    height = line_height * len(lines) + 6
    colour = spec.signs[_stable_hash(name) % len(spec.signs)]
    ink = (0, 0, 0) if sum(colour) > 450 else (255, 255, 255)
    left = int(round(centre_x - width / 2))
    left = min(max(left, 1), panel - width - 1)
    top = int(panel * 0.18)
    draw.rectangle(
        [left, top, left + width, top + height], fill=colour, outline=(20, 20, 20), width=2
    )
    pole_x = left + width // 2
    if int(panel * 0.62) > top + height:
        draw.rectangle([pole_x - 2, top + height, pole_x + 2, int(panel * 0.62)], fill=(40, 40, 40))
    for i, line in enumerate(lines):
        line_width = font.getlength(line)
        draw.text(
            (left + (width - line_width) / 2, top + 3 + i * line_height), line, font=font, fill=ink
        )


def _panel(
    point: RoutePoint, view_heading: float, panel: int, spec: CitySpec, salt: str
) -> Image.Image:
    horizon = int(panel * 0.55)
    image = Image.new("RGB", (panel, panel), spec.sky)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, horizon, panel, panel], fill=spec.ground)
    # Building row along the horizon, drawn from a hash so a state renders identically.
    x = 0
    block = 0
    while x < panel:
        seed = _stable_hash(salt, view_heading, block)
        width = panel // 6 + seed % max(1, panel // 5)
        height = int(panel * (0.12 + (seed >> 8) % 100 / 100 * 0.3))
        colour = spec.buildings[(seed >> 16) % len(spec.buildings)]
        draw.rectangle([x, horizon - height, x + width, horizon], fill=colour)
        for wx in range(x + 4, x + width - 6, 9):
            for wy in range(horizon - height + 5, horizon - 6, 11):
                draw.rectangle([wx, wy, wx + 3, wy + 4], fill=(235, 230, 200))
        x += width + 2
        block += 1
    # Streets leaving the point, as roads converging on the horizon.
    half = panel / 2
    for bearing in point.roads:
        angle = signed_turn(view_heading, bearing)
        if abs(angle) > 60:
            continue
        vanish = half + angle / 45.0 * half
        base = half + angle / 45.0 * panel * 0.55
        spread = panel * 0.42
        draw.polygon(
            [
                (base - spread, panel),
                (base + spread, panel),
                (vanish + 3, horizon),
                (vanish - 3, horizon),
            ],
            fill=spec.road,
        )
        draw.line([(base, panel), (vanish, horizon)], fill=(230, 210, 80), width=2)
    # Landmarks whose bearing falls in this view's 90 degrees.
    for landmark in point.landmarks:
        angle = signed_turn(view_heading, landmark.bearing)
        if -45.0 < angle <= 45.0:
            _draw_sign(draw, landmark.name, half + angle / 45.0 * half * 0.5, panel, spec)
    return image


def _label(image: Image.Image, text: str, panel: int) -> None:
    draw = ImageDraw.Draw(image)
    font = _font(max(8, panel // 14))
    draw.rectangle([0, 0, font.getlength(text) + 6, font.getmetrics()[0] + 6], fill=(0, 0, 0))
    draw.text((3, 2), text, font=font, fill=(255, 255, 255))


def _load(path: str, base_dir: Path | None, size: int) -> Image.Image:
    full = Path(path) if base_dir is None else base_dir / path
    if not full.exists():
        raise FileNotFoundError(f"V-IRL street-view image {full} (named in the route) is missing")
    return Image.open(full).convert("RGB").resize((size, size))


def render_point(
    point: RoutePoint,
    image_size: int,
    city: str | None = None,
    base_dir: Path | None = None,
    salt: str = "",
) -> np.ndarray:
    """The 2x2 street-view grid at ``point`` as a uint8 ``image_size`` x ``image_size`` x 3 array."""
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if "grid" in point.images:
        return np.asarray(_load(point.images["grid"], base_dir, image_size), dtype=np.uint8)
    spec = CITIES.get(city or "", DEFAULT_SPEC)
    panel = image_size // 2
    grid = Image.new("RGB", (image_size, image_size), (0, 0, 0))
    for name in VIEW_NAMES:
        if name in point.images:
            view = _load(point.images[name], base_dir, panel)
        else:
            view = _panel(point, (point.heading + PANEL_OFFSETS[name]) % 360.0, panel, spec, salt)
            if panel >= MIN_LABELLED_PANEL:
                _label(view, name, panel)
        row, col = PANEL_CORNERS[name]
        grid.paste(view, (col * panel, row * panel))
    draw = ImageDraw.Draw(grid)
    draw.line([(panel, 0), (panel, image_size)], fill=(255, 255, 255), width=2)
    draw.line([(0, panel), (image_size, panel)], fill=(255, 255, 255), width=2)
    return np.asarray(grid, dtype=np.uint8)
