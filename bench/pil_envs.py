"""The straightforward baseline of bench/envs.py: pure-Python games drawn with PIL per step.

Game logic comes from ``bench/pure_python_cards.py`` (the core engineer's pure-Python
gymnasium versions of the four games); this wrapper adds what a direct implementation
of the image observation does: every reset and step draws the whole picture with
``PIL.ImageDraw`` (cards as rounded rectangles with their rank and a suit mark, the
formula line, NumberLine's two text lines) and returns ``{"image", "text"}``, as the
vlrl envs do. Fonts are loaded once per env, which any sensible implementation does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pure_python_cards import make_env  # noqa: E402

GREEN = (28, 104, 58)
WHITE = (250, 250, 246)
RED = (204, 18, 30)
BLACK = (16, 16, 16)
LABELS = {1: "A", 11: "J", 12: "Q", 13: "K"}


class PILRendered(gym.Wrapper):
    """Adds a PIL-drawn image observation (and the formula as text) to a pure-Python game."""

    def __init__(self, env: gym.Env, image_size: int = 336) -> None:
        super().__init__(env)
        self.image_size = image_size
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
                "text": gym.spaces.Text(max_length=512, min_length=0),
            }
        )
        self.big_font = ImageFont.load_default(size=image_size // 3)
        self.label_font = ImageFont.load_default(size=image_size // 9)
        self.card_font = ImageFont.load_default(size=image_size // 10)
        self.text_font = ImageFont.load_default(size=image_size // 16)

    def _card(self, draw: ImageDraw.ImageDraw, box, value: int, suit: int, hidden=False) -> None:
        draw.rounded_rectangle(
            box, radius=6, fill=(36, 62, 158) if hidden else WHITE, outline=(70, 70, 70)
        )
        if hidden:
            return
        x0, y0, x1, y1 = box
        ink = RED if suit >= 2 else BLACK
        label = LABELS.get(value, str(value))
        draw.text((x0 + 4, y0 + 2), label, font=self.text_font, fill=ink)
        draw.text(
            ((x0 + x1) // 2, (y0 + y1) // 2), label, font=self.card_font, fill=ink, anchor="mm"
        )
        cx, cy, r = (x0 + x1) // 2, y1 - (y1 - y0) // 5, (x1 - x0) // 8
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=ink)

    def _draw(self) -> dict:
        game = self.env.unwrapped
        size = self.image_size
        text = ""
        if hasattr(game, "target") and hasattr(game, "current"):
            image = Image.new("RGB", (size, size), (255, 255, 255))
            draw = ImageDraw.Draw(image)
            draw.text((8, size // 4), "Target:", font=self.label_font, fill=BLACK, anchor="lm")
            draw.text(
                (size // 2, size // 4),
                str(game.target),
                font=self.big_font,
                fill=BLACK,
                anchor="lm",
            )
            draw.text((8, 3 * size // 4), "Current:", font=self.label_font, fill=BLACK, anchor="lm")
            draw.text(
                (size // 2, 3 * size // 4),
                str(game.current),
                font=self.big_font,
                fill=BLACK,
                anchor="lm",
            )
        elif hasattr(game, "tokens"):
            image = Image.new("RGB", (size, size), GREEN)
            draw = ImageDraw.Draw(image)
            width = (size - 5 * 8) // 4
            for k, value in enumerate(game.values):
                x0 = 8 + k * (width + 8)
                self._card(draw, (x0, 20, x0 + width, 20 + int(width * 1.45)), value, k % 4)
            text = game.formula()
            draw.text(
                (8, 40 + int(width * 1.45)), "Formula: " + text, font=self.text_font, fill=WHITE
            )
        else:
            image = Image.new("RGB", (size, size), GREEN)
            draw = ImageDraw.Draw(image)
            width = (size - 7 * 8) // 6
            height = int(width * 1.45)
            draw.text((8, 4), "Dealer", font=self.text_font, fill=WHITE)
            for k, value in enumerate(game.dealer[:2]):
                x0 = 8 + k * (width + 8)
                self._card(draw, (x0, 30, x0 + width, 30 + height), value, k % 4, hidden=k == 1)
            draw.text((8, size // 2), "Player", font=self.text_font, fill=WHITE)
            for k, value in enumerate(game.player[:6]):
                x0 = 8 + k * (width + 8)
                top = size // 2 + 26
                self._card(draw, (x0, top, x0 + width, top + height), value, k % 4)
        return {"image": np.asarray(image), "text": text}

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        return self._draw(), info

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._draw(), reward, terminated, truncated, info


def make_pil_env(game: str, image_size: int = 336) -> gym.Env:
    """One PIL-rendered pure-Python env by the engine's game name."""
    return PILRendered(make_env(game), image_size)
