"""Rendering: legibility at a tiny VLM's input size, distinct/identical images, PNG samples."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import vlrl.envs  # noqa: F401  (registers the ids)
from PIL import Image
from vlrl.envs import render

OUTPUT = Path(__file__).resolve().parents[1] / "output"


def _ink_rows(image: np.ndarray, threshold: int = 128) -> np.ndarray:
    """Rows of a black-on-white image that hold any dark pixel."""
    return (image.min(axis=2) < threshold).any(axis=1)


def test_numberline_digits_are_big_and_distinct():
    renderer = render.numberline_renderer(336, 5)
    images = renderer.render(np.array([3, 3, 0]), np.array([0, 1, 0]))
    assert images.shape == (3, 336, 336, 3) and images.dtype == np.uint8
    # The number glyph alone spans at least a fifth of the image height.
    right_half = images[0, :, 336 // 2 :]
    rows = np.nonzero(_ink_rows(right_half[:168]))[0]
    assert rows[-1] - rows[0] >= 336 // 5
    # Distinct states differ, equal states are identical.
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[0], images[2])
    again = renderer.render(np.array([3]), np.array([0]))[0]
    assert np.array_equal(images[0], again)


def test_numberline_readable_after_resize_to_56():
    """Every digit 0..5 still gives a distinct 56x56 image once shrunk."""
    renderer = render.numberline_renderer(336, 5)
    small = [
        np.asarray(Image.fromarray(img).resize((56, 56), Image.Resampling.BILINEAR), np.float32)
        for img in renderer.render(np.arange(6), np.zeros(6, int))
    ]
    for a in range(6):
        for b in range(a + 1, 6):
            # Mean absolute difference over the image well above resampling noise.
            assert np.abs(small[a] - small[b]).mean() > 2.0, (a, b)


def test_red_and_black_suits_differ_in_colour():
    renderer = render.cards_renderer(336, 4, "grid")
    black = renderer.render(np.array([[0, 4, 9, 12]]), np.array([[0, 1, 0, 1]]))[0].astype(int)
    red = renderer.render(np.array([[0, 4, 9, 12]]), np.array([[2, 3, 2, 3]]))[0].astype(int)
    reddish = lambda img: ((img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)).sum()  # noqa: E731
    assert reddish(black) == 0
    assert reddish(red) > 2000


def test_every_card_face_is_distinct():
    atlas = render.card_atlas(60, 87)
    flat = atlas.reshape(atlas.shape[0], -1)
    assert len({row.tobytes() for row in flat}) == atlas.shape[0]


def test_formula_line_changes_the_image():
    renderer = render.cards_renderer(336, 4, "row")
    ranks, suits = np.array([[0, 1, 2, 3]] * 3), np.array([[0, 1, 2, 3]] * 3)
    images = renderer.render(ranks, suits, ["", "(1+2", "(1+2"])
    assert not np.array_equal(images[0], images[1])
    assert np.array_equal(images[1], images[2])


def test_blackjack_hole_card_hidden_until_the_end():
    renderer = render.blackjack_renderer(336)
    dealer = np.array([[9, 4], [9, 4]])
    player = np.array([[0, 5, -1], [0, 5, -1]])
    images = renderer.render(
        dealer, player, np.zeros((2, 2), int), np.zeros((2, 3), int), [True, False]
    )
    assert not np.array_equal(images[0], images[1])
    # A hand of many cards still fits: every card is drawn inside the image.
    many = renderer.render(
        dealer[:1], np.arange(11)[None], np.zeros((1, 2), int), np.zeros((1, 11), int), [True]
    )
    assert many.shape == (1, 336, 336, 3)


def test_image_size_is_checked():
    with pytest.raises(ValueError, match="image_size"):
        render.numberline_renderer(8, 5)


SAMPLES = {
    "numberline": ("vlrl/NumberLine-v0", {}),
    "ezpoints": ("vlrl/EZPoints-v0", {}),
    "points24": ("vlrl/Points24-v0", {}),
    "blackjack": ("vlrl/Blackjack-v0", {}),
    "gp_vl_black": ("vlrl/GeneralPoints-v0", {"suits": "black"}),
    "gp_vl_red_ood": (
        "vlrl/GeneralPoints-v0",
        {"suits": "red", "face_rule": "11-12-13", "sampling": "at_least_one_face"},
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_save_png_sample(name):
    """Writes tests/output/<env>.png (and a 56 px version) for a human to look at."""
    env_id, kwargs = SAMPLES[name]
    env = gym.make(env_id, **kwargs)
    observation, _ = env.reset(seed=7)
    if "points" in name and not env.unwrapped.takes_text_action:
        # One expert step so the sample shows a non-empty formula.
        observation, *_ = env.step(env.unwrapped.expert_action())
    image = observation["image"]
    OUTPUT.mkdir(exist_ok=True)
    Image.fromarray(image).save(OUTPUT / f"{name}.png")
    Image.fromarray(image).resize((56, 56), Image.Resampling.BILINEAR).save(
        OUTPUT / f"{name}_56.png"
    )
    assert (OUTPUT / f"{name}.png").stat().st_size > 1000
    assert image.std() > 10  # not a blank image


def test_blackjack_tile_redraw_equals_a_fresh_draw():
    renderer = render.blackjack_renderer(128)
    rng = np.random.default_rng(0)
    n, width = 40, 15

    def random_codes():
        dealer = np.full((n, width), -1)
        player = np.full((n, width), -1)
        dealer_count = rng.integers(2, 8, n)
        player_count = rng.integers(2, width + 1, n)  # side by side, fanned, squeezed
        for i in range(n):
            dealer[i, : dealer_count[i]] = rng.integers(0, 13, dealer_count[i])
            player[i, : player_count[i]] = rng.integers(0, 13, player_count[i])
        suits = rng.integers(0, 4, (n, width))
        return renderer.codes(dealer, player, suits, suits, rng.random(n) < 0.5)

    old = random_codes()
    images = renderer.draw(old)
    for step in range(12):
        new = random_codes()
        if step % 2:  # a hit: the same hands with one more card where there is room
            new = (old[0].copy(), old[1].copy())
            counts = (new[1] != renderer.empty).sum(axis=1)
            room = np.nonzero(counts < width)[0]
            new[1][room, counts[room]] = rng.integers(0, 52, room.size)
        renderer.redraw(images, old, new)
        assert np.array_equal(images, renderer.draw(new))
        old = new


def test_blackjack_patches_turn_every_tile_into_every_other():
    """The box a redraw copies for (shown, new) must carry every pixel where they differ."""
    renderer = render.blackjack_renderer(96)
    tiles = renderer.tiles
    count = tiles.shape[0]
    for shown in range(count):
        for new in range(count):
            top, bottom, left, right = renderer.patch_boxes[shown * count + new]
            canvas = tiles[shown].copy()
            canvas[top:bottom, left:right] = renderer.patches[shown * count + new]
            assert np.array_equal(canvas, tiles[new]), (shown, new)
    # Two faces differ only around their ink: their boxes are well inside the tile.
    top, bottom, left, right = renderer.patch_boxes[0 * count + 5]
    assert (bottom - top) * (right - left) < 0.9 * tiles.shape[1] * tiles.shape[2]
    # "Unknown" rows copy the whole tile.
    assert renderer.patches[count * count + 3].shape == tiles[3].shape


def test_blackjack_codes_pad_clip_and_hide():
    renderer = render.blackjack_renderer(96)
    dealer = np.array([[0, 12, -1], [5, 6, 7]])
    player = np.array([[1, 2, 3, -1, -1], [9, 10, -1, -1, -1]])
    dealer_suits = np.array([[0, 3, 9], [1, 2, 3]])  # 9: out of range, clipped to 3
    player_suits = np.array([[2, 2, 2, 0, 0], [1, 1, 0, 0, 0]])
    codes = renderer.codes(dealer, player, dealer_suits, player_suits, np.array([True, False]))
    empty = renderer.empty
    assert codes.shape == (2, 2, 5)
    assert codes[0].tolist() == [
        [0, render.CARD_BACK, empty, empty, empty],
        [5 * 4 + 1, 6 * 4 + 2, 7 * 4 + 3, empty, empty],
    ]
    assert codes[1].tolist() == [[6, 10, 14, empty, empty], [37, 41, empty, empty, empty]]
    # The same hands padded to equal widths give the same codes.
    padded = np.full((2, 5), -1)
    padded[:, :3] = dealer
    padded_suits = np.zeros((2, 5), int)
    padded_suits[:, :3] = dealer_suits
    again = renderer.codes(padded, player, padded_suits, player_suits, np.array([True, False]))
    assert np.array_equal(codes, again)


def test_blackjack_redraw_as_a_hand_grows_past_every_layout_and_resets():
    """Side by side -> fanned -> squeezed one hit at a time, then a new deal."""
    renderer = render.blackjack_renderer(128)
    width = render.MAX_FANNED + 4
    dealer = np.full((1, width), -1)
    dealer[0, :2] = (3, 11)
    suits = np.tile(np.arange(width) % 4, (1, 1))

    def codes(count):
        player = np.full((1, width), -1)
        player[0, :count] = (np.arange(count) * 5) % 13
        return renderer.codes(dealer, player, suits, suits, np.array([count < width]))

    old = codes(2)
    images = renderer.draw(old)
    for count in [*range(3, width + 1), 2, 7, 3]:
        new = codes(count)
        renderer.redraw(images, old, new)
        assert np.array_equal(images, renderer.draw(new)), count
        old = new


@pytest.mark.parametrize("n_max", [5, 20])  # exact pair boxes; boxes from unions
def test_numberline_redraw_between_any_two_numbers_equals_a_fresh_render(n_max):
    renderer = render.NumberLineRenderer(48, n_max)
    values = np.arange(n_max + 1)
    shown_targets, shown_currents = np.repeat(values, n_max + 1), np.tile(values, n_max + 1)
    new = (shown_currents, shown_targets)  # every (a, b) pair on both lines
    images = renderer.render(shown_targets, shown_currents)
    renderer.redraw(images, (shown_targets, shown_currents), new)
    assert np.array_equal(images, renderer.render(*new))
