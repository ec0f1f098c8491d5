"""Image datasets read from local folders, for the evaluation suites.

The classification layout is torchvision's ImageFolder: ``root/<class name>/<image files>``,
one sub-folder per class, with an optional ``class_names.json`` beside the class folders
mapping a folder name to the words a model should answer (miniImageNet's folders are WordNet
ids such as ``n02116738``, which no model would answer).

The archives the datasets are distributed as are read too and exported once into that
layout (:func:`as_image_folder`): CIFAR-10 (``cifar-10-batches-py``), CIFAR-100
(``cifar-100-python``, fine labels) and MNIST (the idx files, gzipped or not). Nothing is
downloaded; the one dataset the project can make on its own is scikit-learn's 8x8
handwritten digits (real scans shipped inside scikit-learn), exported by
:func:`export_sklearn_digits`.

One bad file never sinks a run: :func:`load_rgb` turns every way an image can fail to read
(an empty or junk file, a truncated one, a "decompression bomb" whose header claims more
than :data:`MAX_IMAGE_PIXELS`) into an :class:`ImageReadError` naming the file, which the
suites catch, count and list in their reports (:func:`read_images`). An archive file that
is not what its name says (a garbage CIFAR pickle, a broken idx file) is a ValueError
naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import random
import re
import struct
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

# The largest image read, in pixels (8192 x 8192: 192 MiB as RGB). An image whose header
# claims more is refused before anything is decoded, so a tiny file cannot claim gigabytes
# (a "decompression bomb"). Below PIL's own bomb threshold (Image.MAX_IMAGE_PIXELS, about
# 89 million), so PIL never gets to warn or raise first.
MAX_IMAGE_PIXELS = 8192 * 8192

IMAGE_FOLDER_LAYOUT = "root/<class name>/<image files>, one sub-folder per class (ImageFolder)"
CLASS_NAMES_FILE = "class_names.json"
ARCHIVE_LAYOUTS = (
    "cifar-10-batches-py (batches.meta, test_batch, data_batch_1..5)",
    "cifar-100-python (meta, test, train)",
    "MNIST idx files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], train-...)",
)

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


class ImageReadError(ValueError):
    """An image file that cannot be read (the message names the file and why)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# What PIL raises on a bad file: UnidentifiedImageError and "image file is truncated" are
# OSErrors; broken PNG chunks raise SyntaxError; short headers EOFError or struct.error;
# odd modes and sizes ValueError; a bomb beyond PIL's own limit DecompressionBombError.
_PIL_READ_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    TypeError,
    Image.DecompressionBombError,
)


def load_rgb(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The image at ``path`` as uint8 HxWx3 (palette, grey and alpha images converted).

    A file that cannot be read (missing, empty, not an image, truncated, or larger than
    ``max_pixels`` by its header, checked before decoding) is an :class:`ImageReadError`
    naming the file."""
    try:
        with warnings.catch_warnings():
            # Our limit is below PIL's, so its bomb warning would only repeat ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        path,
                        f"{width} x {height} = {width * height:,} pixels, more than the "
                        f"{max_pixels:,} allowed (a decompression bomb?)",
                    )
                if width < 1 or height < 1:
                    raise ImageReadError(path, f"an empty {width} x {height} image")
                return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(path, "too large to decode in memory") from None
    except _PIL_READ_ERRORS as error:
        if isinstance(error, FileNotFoundError):
            reason = "no such file"
        elif isinstance(error, Image.DecompressionBombError):  # PIL's own, far larger limit
            reason = (
                f"more than the {max_pixels:,} pixels allowed (a decompression bomb?): "
                f"{_first_line(error)}"
            )
        elif isinstance(error, Image.UnidentifiedImageError) or (
            isinstance(error, OSError) and "cannot identify" in str(error)
        ):
            size = _size_of(path)
            reason = "an empty file" if size == 0 else "not an image file PIL can read"
        else:
            reason = f"unreadable ({type(error).__name__}: {_first_line(error)})"
        raise ImageReadError(path, reason) from None


def _size_of(path: str | Path) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_images(
    paths: Sequence[str | Path],
) -> tuple[list[np.ndarray], list[int], list[tuple[int, ImageReadError]]]:
    """Load ``paths`` with :func:`load_rgb`, skipping the unreadable ones: the images read,
    their positions in ``paths``, and (position, :class:`ImageReadError`) per file skipped."""
    images: list[np.ndarray] = []
    kept: list[int] = []
    failed: list[tuple[int, ImageReadError]] = []
    for position, path in enumerate(paths):
        try:
            images.append(load_rgb(path))
        except ImageReadError as error:
            failed.append((position, error))
            continue
        kept.append(position)
    return images, kept, failed


def skipped_entry(error: ImageReadError, **extra: object) -> dict[str, object]:
    """How a skipped image is listed in a report: ``{"path", "error", **extra}``."""
    return {"path": error.path, "error": error.reason, **extra}


def skipped_note(entries: Sequence[dict], out: str | Path, shown: int = 3) -> str:
    """The stderr note on skipped images: how many, the first few with the reason, and
    the report that lists them all."""
    lines = [f"note: skipped {len(entries)} unreadable image(s), listed in {out}:"]
    lines += [f"  {entry['path']}: {entry['error']}" for entry in entries[:shown]]
    if len(entries) > shown:
        lines.append(f"  ... {len(entries) - shown} more")
    return "\n".join(lines)


def label_text(class_name: str) -> str:
    """A class folder name as the words a model should answer ("aquarium_fish" -> "aquarium fish")."""
    if _WORDNET_ID.match(class_name):
        return class_name
    return " ".join(class_name.replace("_", " ").split())


def _read_class_names(root: Path, classes: list[str]) -> dict[str, str]:
    path = root / CLASS_NAMES_FILE
    if not path.is_file():
        return {}
    try:
        names = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not readable JSON: {error}") from None
    if not isinstance(names, dict) or not all(
        isinstance(key, str) and isinstance(value, str) and value.strip()
        for key, value in names.items()
    ):
        raise ValueError(
            f"{str(path)!r} must be a JSON object mapping a class folder name to its label "
            'words, e.g. {"n02116738": "African hunting dog"}'
        )
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ValueError(f"{str(path)!r} names classes with no folder: {', '.join(unknown)}")
    return {key: " ".join(value.split()) for key, value in names.items()}


@dataclass
class ImageFolder:
    """A classification dataset in the ImageFolder layout."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]] = field(default_factory=list)
    # Answer words per class folder, from class_names.json; other classes use label_text.
    names: dict[str, str] = field(default_factory=dict)

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
        classes = [path.name for path in class_dirs]
        return cls(folder, classes, samples, _read_class_names(folder, classes))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[str]:
        """The classes as answer words (``class_names.json``, else :func:`label_text`)."""
        return [self.names.get(name) or label_text(name) for name in self.classes]

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
        # why: scikit-learn is optional (the [eval] extra); only this export needs it.
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


# ----------------------------------------------------------------- distribution archives

SKLEARN_DIGITS = "sklearn-digits"
SPLITS = ("test", "train")


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def archive_format(root: str | Path) -> str | None:
    """``"cifar10"``, ``"cifar100"`` or ``"mnist"`` when ``root`` holds that dataset as it
    is distributed, else None (an ImageFolder, or nothing known)."""
    folder = Path(root).expanduser()
    if (folder / "batches.meta").is_file():
        return "cifar10"
    if (folder / "meta").is_file() and any((folder / split).is_file() for split in SPLITS):
        return "cifar100"
    if any(_idx_file(folder, f"{prefix}-images-idx3-ubyte") for prefix in ("t10k", "train")):
        return "mnist"
    return None


def _unpickle(path: Path) -> dict:
    # The CIFAR "python version" archives are pickles written by Python 2 (bytes keys).
    # Unpickling runs code from the file: like every CIFAR loader, this trusts the archive.
    if not path.is_file():
        raise FileNotFoundError(f"missing {str(path)!r}")
    try:
        with open(path, "rb") as handle:
            loaded = pickle.load(handle, encoding="bytes")
    except OSError as error:
        raise ValueError(f"{str(path)!r} cannot be read ({error.strerror or error})") from None
    except Exception as error:  # noqa: BLE001 (a garbage pickle raises any kind of error)
        raise ValueError(
            f"{str(path)!r} is not a CIFAR python-version pickle (an empty, truncated or "
            f"foreign file: {type(error).__name__}: {_first_line(error)})"
        ) from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{str(path)!r} does not hold a CIFAR dictionary")
    return loaded


def _field(batch: dict, key: str, path: Path):
    try:
        return batch[key.encode()] if key.encode() in batch else batch[key]
    except KeyError:
        raise ValueError(f"{str(path)!r} has no {key!r} entry (not a CIFAR archive?)") from None


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte idx array (the MNIST file format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise ValueError(
            f"{str(path)!r} cannot be read as an idx file ({type(error).__name__}: "
            f"{_first_line(error)})"
        ) from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{str(path)!r} is not an unsigned-byte idx file")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim < 1 or len(data) < header:
        raise ValueError(f"{str(path)!r}: an idx header of {ndim} dimensions, cut short")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    values = np.frombuffer(data, dtype=np.uint8, offset=header)
    if values.size != int(np.prod(dims)):
        raise ValueError(f"{str(path)!r} holds {values.size} values, its header says {dims}")
    return values.reshape(dims)


def _cifar_images(batch: dict, path: Path) -> np.ndarray:
    try:
        data = np.asarray(_field(batch, "data", path), dtype=np.uint8)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"{str(path)!r}: its 'data' is not an array of bytes ({error})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{str(path)!r}: data of shape {data.shape}, expected [N, 3072]")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes R, G, B -> HxWx3


def _archive_samples(
    folder: Path, kind: str, split: str
) -> tuple[list[str], Iterator[tuple[np.ndarray, int]]]:
    """Class names and (uint8 image, class index) pairs of one split of an archive."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if kind == "cifar10":
        meta_path = folder / "batches.meta"
        names = _class_names(_unpickle(meta_path), "label_names", meta_path)
        files = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
        label_key = "labels"
    elif kind == "cifar100":
        meta_path = folder / "meta"
        names = _class_names(_unpickle(meta_path), "fine_label_names", meta_path)
        files = [split]
        label_key = "fine_labels"
    elif kind == "mnist":
        prefix = "t10k" if split == "test" else "train"
        image_path = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
        label_path = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
        if image_path is None or label_path is None:
            raise FileNotFoundError(
                f"{str(folder)!r} lacks the MNIST {split} files {prefix}-images-idx3-ubyte "
                f"and {prefix}-labels-idx1-ubyte (optionally .gz)"
            )
        images, labels = _read_idx(image_path), _read_idx(label_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"MNIST files in {str(folder)!r} disagree: {images.shape}, {labels.shape}"
            )

        def digits() -> Iterator[tuple[np.ndarray, int]]:
            for image, label in zip(images, labels, strict=True):
                yield np.repeat(image[:, :, None], 3, axis=2), int(label)

        return [str(d) for d in range(10)], digits()
    else:
        raise ValueError(f"unknown archive kind {kind!r}")

    def batches() -> Iterator[tuple[np.ndarray, int]]:
        for name in files:
            path = folder / name
            batch = _unpickle(path)
            images = _cifar_images(batch, path)
            try:
                labels = [int(label) for label in _field(batch, label_key, path)]
            except (TypeError, ValueError, OverflowError) as error:
                raise ValueError(
                    f"{str(path)!r}: its {label_key!r} are not integers ({error})"
                ) from None
            if len(labels) != len(images):
                raise ValueError(f"{str(path)!r}: {len(images)} images, {len(labels)} labels")
            yield from zip(images, labels, strict=True)

    return names, batches()


def _class_names(meta: dict, key: str, path: Path) -> list[str]:
    """The class names of a CIFAR meta file; each becomes a folder name, so each must be
    one: distinct, non-empty text without a path separator."""
    values = _field(meta, key, path)
    try:
        names = [_text(name) for name in values]
    except (TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{str(path)!r}: {key!r} is not a list of names ({error})") from None
    bad = [n for n in names if not n.strip() or n in (".", "..") or any(c in n for c in "/\\\0")]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(
            f"{str(path)!r}: {key!r} must be distinct non-empty class names usable as folder "
            f"names, got {names[:5]!r}{' ...' if len(names) > 5 else ''}"
        )
    return names


def _text(name: bytes | str) -> str:
    if isinstance(name, bytes):
        return name.decode()
    if isinstance(name, str):
        return name
    raise TypeError(f"{name!r} is not text")


def export_archive(root: str | Path, out_dir: str | Path, split: str = "test") -> Path:
    """Write one split of a CIFAR-10 / CIFAR-100 / MNIST archive as an ImageFolder of PNGs."""
    folder = Path(root).expanduser()
    kind = archive_format(folder)
    if kind is None:
        raise FileNotFoundError(
            f"{str(folder)!r} holds none of the known archives: {'; '.join(ARCHIVE_LAYOUTS)}"
        )
    names, samples = _archive_samples(folder, kind, split)
    out = Path(out_dir).expanduser()
    for index, (image, label) in enumerate(samples):
        if not 0 <= label < len(names):
            raise ValueError(f"{str(folder)!r}: label {label} outside its {len(names)} classes")
        class_dir = out / names[label]
        class_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(class_dir / f"{index:05d}.png")
    return out


def as_image_folder(
    source: str | Path, cache: str | Path, split: str = "test", digits_size: int = 32
) -> Path:
    """The ImageFolder to read for ``source``: an ImageFolder itself, or, for the built-in
    ``"sklearn-digits"`` and the archives :func:`archive_format` knows, an export made once
    under ``cache`` (keyed by the archive's path and the split; a half-written export has no
    ``.complete`` marker and is redone). The digits are exported at ``digits_size`` pixels
    (one folder per size), so a model can be given them at its own image size."""
    if str(source) == SKLEARN_DIGITS:
        out, kind = Path(cache).expanduser() / f"sklearn-digits-{digits_size}", SKLEARN_DIGITS
    else:
        folder = Path(source).expanduser()
        kind = archive_format(folder)
        if kind is None:
            return folder
        key = hashlib.sha256(f"{folder.resolve()}:{split}".encode()).hexdigest()[:12]
        out = Path(cache).expanduser() / f"{kind}-{split}-{key}"
    done = out / ".complete"
    if not done.exists():
        if kind == SKLEARN_DIGITS:
            export_sklearn_digits(out, size=digits_size)
        else:
            export_archive(source, out, split)
        done.write_text(f"{kind} {split} exported by vlrl.suites.image_folders from {source}\n")
    return out
