"""Image datasets read from local folders, for the evaluation suites.

The classification layout is torchvision's ImageFolder: ``root/<class name>/<image files>``,
one sub-folder per class. Nothing is downloaded; the one dataset the project can make on
its own is scikit-learn's 8x8 handwritten digits (real scans shipped inside scikit-learn),
exported into that layout by :func:`export_sklearn_digits`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

IMAGE_FOLDER_LAYOUT = "root/<class name>/<image files>, one sub-folder per class (ImageFolder)"

# WordNet ids (miniImageNet's raw folder names) carry no words to turn into a label.
_WORDNET_ID = re.compile(r"^n\d{8}$")


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Every image file under ``root`` (sorted); an absent or image-less folder is an error."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder at {str(folder)!r}")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    images = sorted(path for path in candidates if _is_image(path))
    if not images:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}"
            + (" or its sub-folders" if recursive else "")
        )
    return images


def load_rgb(path: str | Path) -> np.ndarray:
    """The image at ``path`` as uint8 HxWx3 (palette, grey and alpha images converted)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def label_text(class_name: str) -> str:
    """A class folder name as the words a model should answer ("aquarium_fish" -> "aquarium fish")."""
    if _WORDNET_ID.match(class_name):
        return class_name
    return " ".join(class_name.replace("_", " ").split())


@dataclass
class ImageFolder:
    """A classification dataset in the ImageFolder layout."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]] = field(default_factory=list)

    @classmethod
    def open(cls, root: str | Path, max_per_class: int | None = None, seed: int = 0) -> ImageFolder:
        """Index ``root``; ``max_per_class`` keeps a seeded random subset of each class."""
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no dataset folder at {str(folder)!r}; expected the layout {IMAGE_FOLDER_LAYOUT}"
            )
        if max_per_class is not None and max_per_class < 1:
            raise ValueError(f"max_per_class must be at least 1, got {max_per_class}")
        class_dirs = sorted(
            path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")
        )
        if not class_dirs:
            raise FileNotFoundError(
                f"{str(folder)!r} has no class sub-folders; expected the layout "
                f"{IMAGE_FOLDER_LAYOUT}"
            )
        rng = random.Random(seed)
        samples: list[tuple[Path, int]] = []
        empty: list[str] = []
        for index, class_dir in enumerate(class_dirs):
            files = sorted(path for path in class_dir.rglob("*") if _is_image(path))
            if not files:
                empty.append(class_dir.name)
                continue
            if max_per_class is not None and len(files) > max_per_class:
                files = sorted(rng.sample(files, max_per_class))
            samples.extend((path, index) for path in files)
        if empty:
            raise FileNotFoundError(
                f"class folders without images in {str(folder)!r}: {', '.join(empty)}; "
                f"expected the layout {IMAGE_FOLDER_LAYOUT}"
            )
        return cls(root=folder, classes=[path.name for path in class_dirs], samples=samples)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[str]:
        """The classes as answer words (see :func:`label_text`)."""
        return [label_text(name) for name in self.classes]

    def load_rgb(self, index: int) -> np.ndarray:
        return load_rgb(self.samples[index][0])


def export_sklearn_digits(
    out_dir: str | Path, size: int = 32, per_class: int | None = None
) -> Path:
    """Write scikit-learn's handwritten digits as an ImageFolder ``out_dir/0..9/*.png``.

    The 8x8 scans (grey levels 0..16) are inverted to dark ink on white, like a scanned page,
    and enlarged with nearest-neighbour sampling to ``size`` pixels so the pixel grid stays
    visible rather than blurred. Existing files are overwritten, so the export is reproducible.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "the sklearn-digits dataset needs scikit-learn (pip install scikit-learn)"
        ) from error
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    digits = load_digits()
    out = Path(out_dir).expanduser()
    written = dict.fromkeys(range(10), 0)
    for image, target in zip(digits.images, digits.target, strict=True):
        digit = int(target)
        if per_class is not None and written[digit] >= per_class:
            continue
        grey = np.round(255.0 - image * (255.0 / 16.0)).astype(np.uint8)
        picture = Image.fromarray(grey, mode="L").resize((size, size), Image.Resampling.NEAREST)
        class_dir = out / str(digit)
        class_dir.mkdir(parents=True, exist_ok=True)
        picture.convert("RGB").save(class_dir / f"{written[digit]:04d}.png")
        written[digit] += 1
    return out
