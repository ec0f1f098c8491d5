"""Mine CLIP-blind pairs: images a CLIP-style encoder sees as nearly the same while a
vision-only self-supervised encoder (DINOv2) sees them as different (Section 3.2).

The rule: CLIP cosine strictly above ``clip_threshold`` (0.95) and DINOv2 cosine strictly
below ``dino_threshold`` (0.6). Pairs come back sorted by the gap between the two cosines,
largest first. Similarities are computed tile by tile over the upper triangle, so a folder of
50k images never needs an N x N matrix; the DINOv2 cosine is computed only for the pairs
that pass the CLIP test, which are few.

``python -m vlrl.blind_pairs FOLDER --clip PATH --dino PATH`` encodes every image under
FOLDER (recursively) with both encoders, writes the pairs as JSON and a contact sheet PNG
(each pair side by side with both cosines under it) and prints a result table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from vlrl.cli_options import (
    add_device_options,
    add_progress_option,
    non_negative_int,
    positive_int,
    silence_transformers_progress,
)
from vlrl.encoders import ImageEncoder
from vlrl.image_folders import IMAGE_SUFFIXES, list_images, load_rgb
from vlrl.reporting import print_table, progress_bar, write_json

CLIP_THRESHOLD = 0.95
DINO_THRESHOLD = 0.6
DEFAULT_BLOCK_SIZE = 2048
DEFAULT_SHEET_MAX = 24
SHEET_THUMBNAIL = 128
SHEET_COLUMNS = 3
# Light grey, so white image borders stay visible on the sheet.
SHEET_BACKGROUND = (225, 225, 225)
TABLE_ROWS = 20


@dataclass(frozen=True)
class BlindPair:
    """Two image indices (``first < second``) and their cosines under both encoders."""

    first: int
    second: int
    clip_similarity: float
    dino_similarity: float

    @property
    def gap(self) -> float:
        return self.clip_similarity - self.dino_similarity


def _check_threshold(name: str, value: float) -> float:
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a cosine in [-1, 1], got {value}")
    return float(value)


def _as_matrix(name: str, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
    matrix = torch.as_tensor(embeddings)
    if matrix.ndim != 2:
        raise ValueError(
            f"{name} embeddings must be a 2-D [images, dim] array, got {tuple(matrix.shape)}"
        )
    if not matrix.is_floating_point():
        raise ValueError(f"{name} embeddings must be floating point, got {matrix.dtype}")
    return F.normalize(matrix.detach().float().cpu(), dim=-1)


def mine_pairs(
    clip_embeddings: torch.Tensor | np.ndarray,
    dino_embeddings: torch.Tensor | np.ndarray,
    clip_threshold: float = CLIP_THRESHOLD,
    dino_threshold: float = DINO_THRESHOLD,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> list[BlindPair]:
    """Every pair with CLIP cosine > ``clip_threshold`` and DINOv2 cosine < ``dino_threshold``.

    Row ``i`` of both arrays embeds image ``i`` (they are normalised here, so raw vectors do).
    Sorted by gap (CLIP minus DINOv2 cosine), largest first, then by indices.
    """
    clip_threshold = _check_threshold("clip_threshold", clip_threshold)
    dino_threshold = _check_threshold("dino_threshold", dino_threshold)
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    clip = _as_matrix("CLIP", clip_embeddings)
    dino = _as_matrix("DINOv2", dino_embeddings)
    if clip.shape[0] != dino.shape[0]:
        raise ValueError(
            f"embedding counts differ: {clip.shape[0]} CLIP rows vs {dino.shape[0]} DINOv2 rows"
        )
    count = clip.shape[0]
    if count < 2:
        raise ValueError(f"mining pairs needs at least 2 images, got {count}")

    firsts: list[torch.Tensor] = []
    seconds: list[torch.Tensor] = []
    clip_values: list[torch.Tensor] = []
    for row_start in range(0, count, block_size):
        rows = clip[row_start : row_start + block_size]
        # Tiles left of the diagonal hold pairs already seen from the other side.
        for column_start in range(row_start, count, block_size):
            similarity = rows @ clip[column_start : column_start + block_size].T
            hits = similarity > clip_threshold
            if column_start == row_start:
                hits = torch.triu(hits, diagonal=1)
            local_rows, local_columns = hits.nonzero(as_tuple=True)
            if local_rows.numel():
                firsts.append(local_rows + row_start)
                seconds.append(local_columns + column_start)
                clip_values.append(similarity[local_rows, local_columns])
    if not firsts:
        return []
    first = torch.cat(firsts)
    second = torch.cat(seconds)
    clip_similarity = torch.cat(clip_values)
    dino_similarity = (dino[first] * dino[second]).sum(dim=-1)
    keep = dino_similarity < dino_threshold
    pairs = [
        BlindPair(int(i), int(j), float(c), float(d))
        for i, j, c, d in zip(
            first[keep].tolist(),
            second[keep].tolist(),
            clip_similarity[keep].tolist(),
            dino_similarity[keep].tolist(),
            strict=True,
        )
    ]
    pairs.sort(key=lambda pair: (-pair.gap, pair.first, pair.second))
    return pairs


def _thumbnail(path: Path, size: int) -> Image.Image:
    """The image scaled to fit a grey ``size`` square (small images enlarged pixel-sharp)."""
    picture = Image.fromarray(load_rgb(path))
    scale = size / max(picture.width, picture.height)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BICUBIC
    fitted = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(fitted, resample)
    tile = Image.new("RGB", (size, size), SHEET_BACKGROUND)
    tile.paste(picture, ((size - picture.width) // 2, (size - picture.height) // 2))
    return tile


def save_contact_sheet(
    pairs: Sequence[BlindPair],
    paths: Sequence[Path],
    out: str | Path,
    thumbnail: int = SHEET_THUMBNAIL,
    columns: int = SHEET_COLUMNS,
) -> Path:
    """A PNG grid: each pair's two images side by side, both cosines written under them."""
    if not pairs:
        raise ValueError("a contact sheet needs at least one pair")
    font = ImageFont.load_default()
    margin, caption = 8, 18
    cell_width = 2 * thumbnail + 3 * margin
    cell_height = thumbnail + caption + 2 * margin
    columns = max(1, min(columns, len(pairs)))
    rows = (len(pairs) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell_width, rows * cell_height), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, pair in enumerate(pairs):
        left = (index % columns) * cell_width
        top = (index // columns) * cell_height
        for side, image_index in enumerate((pair.first, pair.second)):
            x = left + margin + side * (thumbnail + margin)
            sheet.paste(_thumbnail(paths[image_index], thumbnail), (x, top + margin))
        text = f"CLIP {pair.clip_similarity:.3f}   DINOv2 {pair.dino_similarity:.3f}"
        draw.text((left + margin, top + margin + thumbnail + 3), text, fill=(0, 0, 0), font=font)
    target = Path(out).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target)
    return target


def encode_folder(
    paths: Sequence[Path],
    clip: ImageEncoder,
    dino: ImageEncoder,
    batch_size: int = 32,
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[str]]:
    """Both encoders' embeddings of ``paths``, reading each image once, batch by batch.

    Returns the CLIP and DINOv2 embeddings of the readable images, their indices into
    ``paths`` and one message per unreadable file (skipped, not fatal: one bad file in a
    50k-image folder should not stop the run).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    clip_chunks: list[torch.Tensor] = []
    dino_chunks: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[str] = []
    with progress_bar("encoding images", len(paths), show_progress) as advance:
        for start in range(0, len(paths), batch_size):
            images, indices = [], []
            for index in range(start, min(start + batch_size, len(paths))):
                try:
                    images.append(load_rgb(paths[index]))
                    indices.append(index)
                except (OSError, ValueError) as error:
                    skipped.append(f"{paths[index]}: {error}")
            if images:
                clip_chunks.append(clip.encode_images(images, batch_size=batch_size))
                dino_chunks.append(dino.encode_images(images, batch_size=batch_size))
                kept.extend(indices)
            advance(min(batch_size, len(paths) - start))
    if not kept:
        raise ValueError("none of the images could be read")
    return torch.cat(clip_chunks), torch.cat(dino_chunks), kept, skipped


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Mine CLIP-blind pairs in an image folder and save them (JSON and contact sheet)."""
    parser = argparse.ArgumentParser(
        prog="python -m vlrl.blind_pairs",
        description=(
            "Find CLIP-blind pairs: images with CLIP cosine above --clip-threshold and DINOv2 "
            "cosine below --dino-threshold."
        ),
    )
    parser.add_argument("folder", help="folder of images (searched recursively)")
    parser.add_argument(
        "--clip",
        required=True,
        help="local CLIP-style model folder (its image tower embeds the images)",
    )
    parser.add_argument("--dino", required=True, help="local DINOv2-style model folder")
    parser.add_argument("--clip-threshold", type=float, default=CLIP_THRESHOLD)
    parser.add_argument("--dino-threshold", type=float, default=DINO_THRESHOLD)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--block-size",
        type=positive_int,
        default=DEFAULT_BLOCK_SIZE,
        help="rows and columns per similarity tile (memory ~ block_size^2 floats)",
    )
    parser.add_argument("--out", default="blind_pairs.json", help="pairs JSON path")
    parser.add_argument(
        "--sheet", default=None, help="contact sheet PNG path (default: --out with .png)"
    )
    parser.add_argument(
        "--sheet-max",
        type=non_negative_int,
        default=DEFAULT_SHEET_MAX,
        help="pairs drawn on the sheet (0: no sheet)",
    )
    add_device_options(parser)
    add_progress_option(parser)
    args = parser.parse_args(argv)

    try:
        _check_threshold("--clip-threshold", args.clip_threshold)
        _check_threshold("--dino-threshold", args.dino_threshold)
        root = Path(args.folder).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"no image folder at {str(root)!r}; expected a folder of image files "
                f"({', '.join(IMAGE_SUFFIXES)}), searched recursively"
            )
        paths = list_images(root, recursive=True)
        if len(paths) < 2:
            raise ValueError(f"{str(root)!r} holds {len(paths)} image; mining pairs needs 2+")
        silence_transformers_progress()
        clip = ImageEncoder.load(args.clip, device=args.device, dtype=args.dtype)
        dino = ImageEncoder.load(args.dino, device=args.device, dtype=args.dtype)
        clip_embeddings, dino_embeddings, kept, skipped = encode_folder(
            paths, clip, dino, batch_size=args.batch_size, show_progress=not args.no_progress
        )
        found = mine_pairs(
            clip_embeddings,
            dino_embeddings,
            clip_threshold=args.clip_threshold,
            dino_threshold=args.dino_threshold,
            block_size=args.block_size,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    readable = [paths[index] for index in kept]
    pairs = [
        BlindPair(kept[pair.first], kept[pair.second], pair.clip_similarity, pair.dino_similarity)
        for pair in found
    ]
    sheet_path = None
    if pairs and args.sheet_max > 0:
        sheet_target = Path(args.sheet) if args.sheet else Path(args.out).with_suffix(".png")
        sheet_path = save_contact_sheet(pairs[: args.sheet_max], paths, sheet_target)
    payload = {
        "folder": str(root),
        "clip": str(args.clip),
        "dino": str(args.dino),
        "clip_encoder": clip.name,
        "dino_encoder": dino.name,
        "clip_threshold": args.clip_threshold,
        "dino_threshold": args.dino_threshold,
        "images": len(readable),
        "skipped": skipped,
        "pair_count": len(pairs),
        "pairs": [
            {
                "first": _relative(paths[pair.first], root),
                "second": _relative(paths[pair.second], root),
                "clip_cosine": pair.clip_similarity,
                "dino_cosine": pair.dino_similarity,
                "gap": pair.gap,
            }
            for pair in pairs
        ],
        "sheet": str(sheet_path) if sheet_path else None,
    }
    out = write_json(args.out, payload)
    print_table(
        f"CLIP-blind pairs: {len(pairs)} among {len(readable)} images "
        f"(CLIP > {args.clip_threshold}, DINOv2 < {args.dino_threshold})",
        ["#", "first", "second", "CLIP cos", "DINOv2 cos", "gap"],
        [
            [
                rank + 1,
                _relative(paths[pair.first], root),
                _relative(paths[pair.second], root),
                pair.clip_similarity,
                pair.dino_similarity,
                pair.gap,
            ]
            for rank, pair in enumerate(pairs[:TABLE_ROWS])
        ],
    )
    if len(pairs) > TABLE_ROWS:
        print(f"... {len(pairs) - TABLE_ROWS} more in {out}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s); listed in {out}", file=sys.stderr)
    print(f"pairs: {out}" + (f"  contact sheet: {sheet_path}" if sheet_path else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
