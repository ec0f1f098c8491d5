"""Run logging: JSONL + TensorBoard scalars, learning-curve PNGs, smoothing and error bars.

Curves follow the dissertation's convention: a Savitzky–Golay filter of order 3 over the
raw series, and binomial standard errors sqrt(P(1-P)/N) around success rates.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np


def binomial_stderr(p: float | np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Standard error sqrt(p(1-p)/n) of a success rate measured on n episodes."""
    p = np.asarray(p, dtype=np.float64)
    n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    return np.sqrt(np.clip(p * (1.0 - p), 0.0, None) / n)


def savgol_smooth(values: np.ndarray, window: int | None = None, order: int = 3) -> np.ndarray:
    """Savitzky–Golay smoothing (order 3 by default); too-short series are returned as is.

    The window defaults to about a fifth of the series, odd, at least order + 2.
    """
    from scipy.signal import savgol_filter

    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n <= order + 1:
        return values.copy()
    if window is None:
        window = max(order + 2, n // 5)
    window = min(window, n if n % 2 == 1 else n - 1)
    if window % 2 == 0:
        window -= 1
    if window <= order:
        return values.copy()
    return savgol_filter(values, window, order)


class RunLogger:
    """Scalars to ``metrics.jsonl`` (one JSON object per call) and to TensorBoard."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self.writer = None
        self.started = time.time()
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a dependency; keep JSONL working anyway
                self.writer = None

    def log(self, step: int, scalars: dict[str, Any], **fields: Any) -> None:
        """Record ``scalars`` (tag -> number) at ``step``; extra fields go to JSONL only."""
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in scalars.items()}
        record = {
            "step": int(step),
            "wall_s": round(time.time() - self.started, 2),
            **fields,
            **clean,
        }
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for tag, value in clean.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(tag, value, int(step))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_learning_curve(
    records: list[dict],
    png_path: str | Path,
    title: str = "",
    success_key: str = "charts/episode_success",
    eval_key: str = "eval/success",
    eval_n_key: str = "eval/episodes",
    loss_keys: tuple[str, ...] = ("losses/pg_loss", "losses/v_loss", "losses/approx_kl"),
) -> Path:
    """Two panels: success rate against env steps (training episodes, Savitzky–Golay
    smoothed; evaluations with binomial error bars) and the loss terms per update."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_success, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    train = [
        (r["env_steps"], r[success_key])
        for r in records
        if r.get(success_key) is not None and "env_steps" in r
    ]
    if train:
        x, y = (np.array(v, dtype=np.float64) for v in zip(*train, strict=True))
        ax_success.plot(
            x,
            y,
            color="tab:blue",
            alpha=0.25,
            label="episodes finished in rollouts (raw; short ones over-represented)",
        )
        ax_success.plot(
            x,
            savgol_smooth(y),
            color="tab:blue",
            label="episodes finished in rollouts (Savitzky-Golay)",
        )
    evals = [r for r in records if r.get(eval_key) is not None]
    if evals:
        x = np.array([r.get("env_steps", r["step"]) for r in evals], dtype=np.float64)
        p = np.array([r[eval_key] for r in evals])
        n = np.array([r.get(eval_n_key, 1) for r in evals])
        ax_success.errorbar(
            x,
            p,
            yerr=binomial_stderr(p, n),
            fmt="o-",
            color="tab:red",
            capsize=3,
            label="evaluation (±1 s.e.)",
        )
    ax_success.set_xlabel("environment steps")
    ax_success.set_ylabel("success rate")
    ax_success.set_ylim(-0.02, 1.02)
    ax_success.grid(alpha=0.3)
    ax_success.legend(loc="lower right", fontsize=8)
    for key in loss_keys:
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if pts:
            x, y = zip(*pts, strict=True)
            ax_loss.plot(x, y, label=key.split("/")[-1])
    ax_loss.set_xlabel("update")
    ax_loss.set_title("loss terms")
    ax_loss.grid(alpha=0.3)
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
