"""The study's figure and table, from its evaluation records.

Figure (the dissertation's form, Figs. 5.5-5.7): one panel per variant (ID first, then each
OOD variant), success against training FLOPs, one curve per arm through its checkpoints:
the mean over seeds, with a band of ±1 binomial standard error sqrt(P(1-P)/N), N the
episodes pooled over seeds. Points are the measured checkpoints; the lines between them
only join them.

Table (markdown + JSON): per arm and variant, the start (the base), the best checkpoint,
the final one, and the change final - start with two standard errors: binomial (start and
final each sqrt(P(1-P)/N), combined in quadrature, which ignores the pairing and so is
conservative) and, with two or more seeds, the spread of the per-seed changes
(std / sqrt(seeds)). Contrasts: for every SFT arm and RL arm, the difference of their
changes with its binomial s.e. (from the two finals when both arms start from the same base
evaluation, since the start then cancels; else from both changes) and its seed s.e., each
with z = difference / s.e.

EMT (forgetting, SPEC section 2.5): when the records carry an EMT accuracy (the spec's
``evaluation.emt``), it is one more pseudo-variant ``emt`` (accuracy over the held-out
images, N = images x seeds) run through the same aggregation, table arithmetic and
contrasts; the table gets an "EMT accuracy (forgetting)" section and the figure an "EMT
accuracy vs FLOPs" panel. A negative change is forgetting; a positive RL-minus-SFT
difference says RL forgot less.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlrl.reporting import write_json, write_text_atomic
from vlrl.training.run_log import binomial_stderr

COUNT_KEYS = {
    "success": "episodes",
    "per_step_accuracy": "steps",
    "recognition_accuracy": "steps",
    "accuracy": "samples",  # EMT
}
EMT = "emt"  # the pseudo-variant of the EMT accuracy


def _count(metrics: dict[str, float], metric: str) -> float:
    return float(metrics.get(COUNT_KEYS.get(metric, "episodes"), metrics.get("episodes", 1)))


def aggregate(
    records: list[dict[str, Any]], arms: Sequence[Any], variants: Sequence[str], metric: str
) -> dict[str, Any]:
    """Per arm: per checkpoint (in order) the seed-mean FLOPs and, per variant, the
    seed-mean value, pooled count N, binomial s.e. and the per-seed values."""
    out: dict[str, Any] = {}
    for arm in arms:
        curve = []
        for step in arm.checkpoints:
            rows = [r for r in records if r["arm"] == arm.name and r["step"] == step]
            if not rows:
                continue
            rows.sort(key=lambda r: r["seed"])
            point: dict[str, Any] = {
                "step": step,
                "flops": float(np.mean([r["flops"] for r in rows])),
                "seeds": [r["seed"] for r in rows],
            }
            for name in variants:
                values = [float(r["variants"][name][metric]) for r in rows]
                n = sum(_count(r["variants"][name], metric) for r in rows)
                mean = float(np.mean(values))
                point[name] = {
                    "mean": mean,
                    "n": n,
                    "stderr": float(binomial_stderr(mean, n)),
                    "per_seed": values,
                }
            curve.append(point)
        out[arm.name] = curve
    return out


def _change(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    per_seed = [b - a for a, b in zip(first["per_seed"], last["per_seed"], strict=False)]
    return {
        "change": last["mean"] - first["mean"],
        "stderr": math.sqrt(first["stderr"] ** 2 + last["stderr"] ** 2),
        "per_seed": per_seed,
        "stderr_seeds": _seed_stderr(per_seed),
    }


def _seed_stderr(per_seed: list[float]) -> float | None:
    """The standard error of a mean over seeds, std(ddof=1) / sqrt(seeds); None for one."""
    if len(per_seed) < 2:
        return None
    return float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed)))


def summarize(
    curves: dict[str, Any], arms: Sequence[Any], variants: Sequence[str]
) -> dict[str, Any]:
    """Start, best, final and change per arm and variant; SFT-vs-RL contrasts."""
    table: dict[str, Any] = {}
    for arm in arms:
        curve = curves.get(arm.name) or []
        complete = bool(curve) and curve[-1]["step"] == arm.checkpoints[-1]
        row: dict[str, Any] = {
            "kind": arm.kind,
            "label": arm.label,
            "checkpoints": [p["step"] for p in curve],
            "complete": complete,
            "final_flops": curve[-1]["flops"] if curve else None,
            "start_flops": curve[0]["flops"] if curve else None,
        }
        for name in variants:
            if not curve:
                continue
            best = max(curve, key=lambda p, name=name: p[name]["mean"])
            row[name] = {
                "start": curve[0][name]["mean"],
                "start_stderr": curve[0][name]["stderr"],
                "best": best[name]["mean"],
                "best_step": best["step"],
                "final": curve[-1][name]["mean"],
                "final_stderr": curve[-1][name]["stderr"],
                "start_per_seed": curve[0][name]["per_seed"],
                **_change(curve[0][name], curve[-1][name]),
            }
        table[arm.name] = row
    contrasts = []
    for a in arms:
        for b in arms:
            if a.kind != "sft" or b.kind != "rl":
                continue
            ra, rb = table.get(a.name, {}), table.get(b.name, {})
            for name in variants:
                if name not in ra or name not in rb:
                    continue
                contrasts.append(_contrast(name, a.name, ra[name], b.name, rb[name]))
    return {"arms": table, "contrasts": contrasts}


def _contrast(
    variant: str, sft_arm: str, sft: dict[str, Any], rl_arm: str, rl: dict[str, Any]
) -> dict[str, Any]:
    """RL change minus SFT change on one variant, with two standard errors.

    Binomial: when both arms start from the same base evaluation (the same per-seed start
    values, as every arm of a study whose arms share the evaluation setting does), the
    start cancels out of the difference, which is then final(RL) - final(SFT), and only
    the two finals' s.e. enter; otherwise each arm's change s.e. (start and final) enters.
    Seeds: the spread of the per-seed differences (std / sqrt(seeds)), two or more seeds.
    """
    diff = rl["change"] - sft["change"]
    paired = sft["start_per_seed"] == rl["start_per_seed"]
    if paired:
        se = math.sqrt(sft["final_stderr"] ** 2 + rl["final_stderr"] ** 2)
    else:
        se = math.sqrt(sft["stderr"] ** 2 + rl["stderr"] ** 2)
    per_seed = [r - f for f, r in zip(sft["per_seed"], rl["per_seed"], strict=False)]
    se_seeds = _seed_stderr(per_seed)
    return {
        "variant": variant,
        "rl_arm": rl_arm,
        "sft_arm": sft_arm,
        "rl_change_minus_sft_change": diff,
        "stderr": se,
        "z": diff / se if se > 0 else None,
        "shared_start": paired,
        "per_seed": per_seed,
        "stderr_seeds": se_seeds,
        "z_seeds": diff / se_seeds if se_seeds else None,
    }


def emt_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that carry an EMT accuracy, with it as their only variant ``emt``
    (metric ``accuracy``, counted in ``samples``)."""
    out = []
    for r in records:
        emt = r.get("emt")
        if not emt or emt.get("accuracy") is None:
            continue
        cell = {"accuracy": float(emt["accuracy"]), "samples": float(emt["samples"])}
        out.append({**r, "variants": {EMT: cell}})
    return out


def emt_summary(records: list[dict[str, Any]], arms: Sequence[Any]) -> dict[str, Any] | None:
    """Curves, per-arm start/final/change and RL-minus-SFT contrasts of the EMT accuracy;
    None when no record carries one."""
    rows = emt_records(records)
    if not rows:
        return None
    curves = aggregate(rows, arms, [EMT], "accuracy")
    return {"curves": curves, **summarize(curves, arms, [EMT])}


def emt_markdown(emt: dict[str, Any], dataset: str | None) -> str:
    """The "EMT accuracy (forgetting)" section (values in percent)."""
    where = f" on the held-out images of `{dataset}`" if dataset else ""
    lines = [
        f"**EMT accuracy (forgetting)**{where} (greedy, label match, %; change ± 1 s.e.; "
        "a negative change is forgetting)",
        "",
        "| arm | kind | final FLOPs | base | final | change ± binomial s.e. | change ± seed s.e. |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, row in emt["arms"].items():
        cell = row.get(EMT)
        if cell is None:
            lines.append(f"| {arm} | {row['kind']} | - | - | - | - | - |")
            continue
        lead, change = _arm_cells(arm, row, cell)
        lines.append(f"{lead} | {_pct(cell['start'])} | {_pct(cell['final'])} | {change} |")
    if emt["contrasts"]:
        lines += [
            "",
            "| RL arm | SFT arm | RL change minus SFT change ± binomial s.e. | z | ± seed s.e. "
            "| z (seeds) |",
            "|---|---|---|---|---|---|",
        ]
        for c in emt["contrasts"]:
            lines.append(_contrast_row(c, with_variant=False))
    lines += [
        "",
        "Every seed reads the same held-out images, so the binomial s.e. (N = images x seeds)",
        "is optimistic about the image sample; the seed s.e. is the spread over training seeds.",
        "",
    ]
    return "\n".join(lines)


def _arm_cells(arm: str, row: dict[str, Any], cell: dict[str, Any]) -> tuple[str, str]:
    """One arm's table row pieces: "| arm | kind | final FLOPs" and "change ± binomial
    s.e. | change ± seed s.e." (the columns both tables share)."""
    flops = f"{row['final_flops']:.3g}" if row["final_flops"] is not None else "-"
    done = "" if row["complete"] else " (incomplete)"
    seeds = (
        f"{_signed(cell['change'])} ± {100 * cell['stderr_seeds']:.1f}"
        if cell["stderr_seeds"] is not None
        else "- (1 seed)"
    )
    change = f"{_signed(cell['change'])} ± {100 * cell['stderr']:.1f} | {seeds}"
    return f"| {arm}{done} | {row['kind']} | {flops}", change


def _contrast_row(c: dict[str, Any], with_variant: bool) -> str:
    z = "-" if c["z"] is None else f"{c['z']:.2f}"
    se_seeds = c.get("stderr_seeds")
    seeds = "- (1 seed)" if se_seeds is None else f"± {100 * se_seeds:.1f}"
    z_seeds = "-" if c.get("z_seeds") is None else f"{c['z_seeds']:.2f}"
    lead = f"| {c['variant']} " if with_variant else ""
    return (
        f"{lead}| {c['rl_arm']} | {c['sft_arm']} | "
        f"{_signed(c['rl_change_minus_sft_change'])} ± {100 * c['stderr']:.1f} | {z} | "
        f"{seeds} | {z_seeds} |"
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


def markdown_table(
    summary: dict[str, Any], variants: Sequence[str], metric: str, header: str
) -> str:
    """The table as markdown (values in percent)."""
    lines = [header, ""]
    for name in variants:
        title = "in-distribution" if name == "id" else f"out-of-distribution `{name}`"
        lines += [
            f"**{title}** ({metric}, %; change ± 1 s.e.)",
            "",
            "| arm | kind | final FLOPs | start | best (at) | final | change ± binomial s.e. | change ± seed s.e. |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for arm, row in summary["arms"].items():
            cell = row.get(name)
            if cell is None:
                lines.append(f"| {arm} | {row['kind']} | - | - | - | - | - | - |")
                continue
            lead, change = _arm_cells(arm, row, cell)
            lines.append(
                f"{lead} | {_pct(cell['start'])} | {_pct(cell['best'])} ({cell['best_step']}) | "
                f"{_pct(cell['final'])} | {change} |"
            )
        lines.append("")
    if summary["contrasts"]:
        lines += [
            "**RL change minus SFT change** (percentage points; ± 1 binomial s.e., from the "
            "two finals when the arms share their start, else from both changes; ± 1 seed s.e., "
            "the spread of the per-seed differences)",
            "",
            "| variant | RL arm | SFT arm | difference ± binomial s.e. | z | ± seed s.e. | z (seeds) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in summary["contrasts"]:
            lines.append(_contrast_row(c, with_variant=True))
        lines.append("")
    return "\n".join(lines)


def plot_study(
    curves: dict[str, Any],
    arms: Sequence[Any],
    variants: Sequence[str],
    metric: str,
    png_path: Path,
    title: str,
    emt_curves: dict[str, Any] | None = None,
) -> Path:
    """One panel per variant, and an "EMT accuracy vs FLOPs" panel after them when
    ``emt_curves`` (the EMT pseudo-variant's curves) is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, curves, metric) for name in variants]
    if emt_curves is not None:
        panels.append((EMT, emt_curves, "EMT accuracy"))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False, sharex=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, (name, panel_curves, ylabel) in enumerate(panels):
        ax = axes[0][col]
        for i, arm in enumerate(arms):
            curve = panel_curves.get(arm.name) or []
            if not curve:
                continue
            x = np.array([p["flops"] for p in curve])
            y = np.array([p[name]["mean"] for p in curve])
            se = np.array([p[name]["stderr"] for p in curve])
            color = colors[i % len(colors)]
            style = "-" if arm.kind == "rl" else "--"
            ax.plot(x, 100 * y, style, marker="o", color=color, label=f"{arm.label} ({arm.kind})")
            ax.fill_between(x, 100 * (y - se), 100 * (y + se), color=color, alpha=0.18, lw=0)
        if name == EMT:
            ax.set_title("EMT accuracy, held-out images (forgetting)")
        else:
            ax.set_title("in-distribution" if name == "id" else f"OOD: {name}")
        ax.set_xlabel("training FLOPs")
        ax.set_ylabel(f"{ylabel.replace('_', ' ')} (%)")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def write_report(
    out: Path,
    name: str,
    records: list[dict[str, Any]],
    arms: Sequence[Any],
    variants: Sequence[str],
    metric: str,
    seeds: Sequence[int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """``figure.png``, ``table.md`` and ``table.json`` under ``out``."""
    curves = aggregate(records, arms, variants, metric)
    summary = summarize(curves, arms, variants)
    seeds_text = ", ".join(str(s) for s in seeds)
    header = (
        f"## Study `{name}`\n\nSeeds {seeds_text}; {extra.get('episodes')} paired episodes per "
        f"evaluation and seed; FLOPs as SPEC section 2 (N = {extra.get('n_params'):,} "
        f"parameters, D_init = {extra.get('d_init'):,} tokens)."
    )
    text = markdown_table(summary, variants, metric, header)
    emt = emt_summary(records, arms)
    if emt is not None:
        text += "\n" + emt_markdown(emt, extra.get("emt_dataset"))
    write_text_atomic(out / "table.md", text)
    payload = {"name": name, "metric": metric, "seeds": list(seeds), **extra, **summary}
    payload["curves"] = curves
    if emt is not None:  # absent, not null, for the studies without EMT (same JSON as before)
        payload["emt"] = emt
    write_json(out / "table.json", payload)
    plot_study(
        curves,
        arms,
        variants,
        metric,
        out / "figure.png",
        f"{name} (seeds {seeds_text})",
        emt["curves"] if emt is not None else None,
    )
    return payload
