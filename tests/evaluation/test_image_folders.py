"""ImageFolder reading, label words and the scikit-learn digits export."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlrl.image_folders import (
    ImageFolder,
    export_sklearn_digits,
    label_text,
    list_images,
    load_rgb,
)


def _write(path, colour, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (6, 4), colour).save(path)


def test_image_folder_indexes_classes_in_sorted_order(tmp_path):
    _write(tmp_path / "dog" / "b.png", (0, 0, 255))
    _write(tmp_path / "cat" / "a.png", (255, 0, 0))
    _write(tmp_path / "cat" / "nested" / "c.jpg", (0, 255, 0))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    dataset = ImageFolder.open(tmp_path)
    assert dataset.classes == ["cat", "dog"]
    assert [(path.name, index) for path, index in dataset.samples] == [
        ("a.png", 0),
        ("c.jpg", 0),
        ("b.png", 1),
    ]
    first = dataset.load_rgb(0)
    assert first.dtype == np.uint8 and first.shape == (4, 6, 3)
    assert tuple(first[0, 0]) == (255, 0, 0)


def test_max_per_class_is_a_seeded_subset(tmp_path):
    for i in range(10):
        _write(tmp_path / "only" / f"{i}.png", (i, i, i))
    first = ImageFolder.open(tmp_path, max_per_class=3, seed=1)
    again = ImageFolder.open(tmp_path, max_per_class=3, seed=1)
    assert len(first) == 3 and first.samples == again.samples
    other_seeds = {
        tuple(ImageFolder.open(tmp_path, max_per_class=3, seed=s).samples) for s in range(6)
    }
    assert len(other_seeds) > 1


def test_missing_and_malformed_folders_name_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageFolder"):
        ImageFolder.open(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolder.open(tmp_path)
    (tmp_path / "empty_class").mkdir()
    _write(tmp_path / "full" / "x.png", (1, 2, 3))
    with pytest.raises(FileNotFoundError, match="empty_class"):
        ImageFolder.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(tmp_path / "empty_class")


def test_list_images_and_modes(tmp_path):
    _write(tmp_path / "a" / "grey.png", 128, mode="L")
    _write(tmp_path / "rgba.png", (10, 20, 30, 0), mode="RGBA")
    found = list_images(tmp_path)
    assert [p.name for p in found] == ["grey.png", "rgba.png"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["rgba.png"]
    assert tuple(load_rgb(found[0])[0, 0]) == (128, 128, 128)
    assert tuple(load_rgb(found[1])[0, 0]) == (10, 20, 30)


def test_label_text():
    assert label_text("aquarium_fish") == "aquarium fish"
    assert label_text("African_hunting_dog") == "African hunting dog"
    assert label_text("n01532829") == "n01532829"
    assert label_text("7") == "7"


def test_export_sklearn_digits_is_real_and_reproducible(tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn ships the digits (installed by [test])")
    from sklearn.datasets import load_digits

    out = export_sklearn_digits(tmp_path / "digits", size=16, per_class=3)
    dataset = ImageFolder.open(out)
    assert dataset.classes == [str(d) for d in range(10)]
    assert len(dataset) == 30
    digits = load_digits()
    first_zero = digits.images[digits.target == 0][0]
    picture = dataset.load_rgb(0)
    assert picture.shape == (16, 16, 3)
    # Ink is dark on white: the 8x8 scan's 0..16 grey levels, inverted, every 2nd pixel.
    expected = np.round(255.0 - first_zero * (255.0 / 16.0)).astype(np.uint8)
    np.testing.assert_array_equal(picture[::2, ::2, 0], expected)
    again = export_sklearn_digits(tmp_path / "digits", size=16, per_class=3)
    assert (again / "0" / "0000.png").read_bytes() == (out / "0" / "0000.png").read_bytes()
