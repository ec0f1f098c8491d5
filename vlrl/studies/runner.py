"""Running a study: the base, then every arm for every seed one after another, each
checkpoint evaluated on every variant, then the figure and the table.

Layout of ``<out>/<name>/``::

    spec.resolved.yaml         the spec with defaults filled in, each arm's full config,
                               and a fingerprint of what decides the results
    figure.png, table.md, table.json
    evals/base/seed-<s>/<setting>.json   the base (every arm's checkpoint 0)
    evals/<arm>/seed-<s>/step-<k>.json   one evaluation per listed checkpoint (with its
                                         EMT accuracy when the spec sets evaluation.emt)
    work/                      models and runs (ignored by git: work/ has a .gitignore)
      base/<shared|seed-s>/policy, base.json
      arms/<arm>/seed-<s>/     the arm's run (rl: run/, a vlrl.train run folder; sft:
                               checkpoints/sft-<step>/), done.json once trained and evaluated

Rerunning the command finishes a study: a unit (arm, seed) with ``done.json`` is skipped,
a killed one is resumed from its newest checkpoint, and an evaluation already written is
not repeated. Seeds and arms can be added to a study later (``--seeds`` runs some of the
spec's seeds only); a rerun whose base, evaluation or a shared arm would differ (another
fingerprint) is refused rather than mixed into the old results.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from vlrl.config import ConfigError
from vlrl.reporting import write_json, write_text_atomic
from vlrl.studies.arms import arm_points, train_arm
from vlrl.studies.base import BASE_INFO, build_base
from vlrl.studies.report import write_report
from vlrl.studies.scoring import cached_evaluation, eval_signature, flops_of
from vlrl.studies.spec import StudySpec, dump_resolved, fingerprint, fingerprint_conflicts
from vlrl.training.stopping import StopRequest

RESOLVED = "spec.resolved.yaml"
DONE = "done.json"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Study:
    """One study's folders and the steps that fill them."""

    def __init__(
        self,
        spec: StudySpec,
        out_root: Path,
        stop: StopRequest | None = None,
        seeds: list[int] | None = None,
    ):
        self.spec = spec
        self.seeds = list(spec.seeds) if seeds is None else list(seeds)
        unknown = sorted(set(self.seeds) - set(spec.seeds))
        if unknown or not self.seeds:
            raise ConfigError(f"--seeds must be some of the spec's seeds {spec.seeds}, got {seeds}")
        self.out = Path(out_root) / spec.name
        self.work = self.out / "work"
        self.stop = stop or StopRequest()
        self.variants = spec.variant_kwargs()

    # ------------------------------------------------------------------ folders

    def base_dir(self, seed: int) -> Path:
        return self.work / "base" / (f"seed-{seed}" if self.spec.per_seed else "shared")

    def base_seed(self, seed: int) -> int:
        return seed if self.spec.per_seed else self.spec.seeds[0]

    def unit_dir(self, arm: str, seed: int) -> Path:
        return self.work / "arms" / arm / f"seed-{seed}"

    def eval_path(self, arm: str, seed: int, step: int) -> Path:
        return self.out / "evals" / arm / f"seed-{seed}" / f"step-{step}.json"

    # ------------------------------------------------------------------ steps

    def prepare(self) -> None:
        """Write (or check, then rewrite) ``spec.resolved.yaml``. A folder that holds the
        same study with other seeds or arms goes on; one whose base, evaluation or a shared
        arm differs is refused."""
        resolved = self.spec.resolved()
        digest = fingerprint(resolved)
        path = self.out / RESOLVED
        if path.is_file():
            old = (yaml.safe_load(path.read_text()) or {}).get("fingerprint")
            problems = fingerprint_conflicts(old, digest)
            if problems:
                raise ConfigError(
                    f"{self.out} holds a run of a different study ({'; '.join(problems)}); "
                    "choose another --out or remove that folder"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, dump_resolved({"fingerprint": digest, **resolved}))
        self.work.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.work / ".gitignore", "*\n")

    def base(self, seed: int) -> dict[str, Any]:
        folder = self.base_dir(seed)
        if not (folder / BASE_INFO).is_file():
            what = "foundation stage" if self.spec.foundation else "base model"
            _say(f"[{self.spec.name}] {what} (seed {self.base_seed(seed)}) -> {folder}")
            info = build_base(
                self.spec.base_cfg(self.base_seed(seed)), self.spec.foundation, folder, _say
            )
            _say(
                f"[{self.spec.name}] base ready: N={info['n_params']:,}, "
                f"D_init={info['d_init']:,} tokens, {info['foundation']['seconds']:.0f} s"
            )
        return json.loads((folder / BASE_INFO).read_text())

    def run_unit(self, arm: Any, seed: int) -> list[dict[str, Any]] | str:
        """Train (or resume, or skip) one arm for one seed and evaluate its checkpoints;
        returns its evaluation records, or why it stopped."""
        info = self.base(seed)
        policy = self.base_dir(seed) / "policy"
        unit = self.unit_dir(arm.name, seed)
        cfg = self.spec.arm_cfg(arm, seed, unit, policy)
        done = (unit / DONE).is_file()
        tag = f"[{self.spec.name}] {arm.name} seed {seed}"
        if done:
            _say(f"{tag}: done (skipped)")
        else:
            unit.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            _say(f"{tag}: training ({arm.kind}, checkpoints {arm.checkpoints})")
            why = train_arm(arm.kind, cfg, arm.checkpoints, unit, policy, self.stop)
            if why is not None:
                return why
            _say(f"{tag}: trained in {time.time() - t0:.0f} s")
        n, d_init = info["n_params"], info["d_init"]
        records = []
        base_eval = self.out / "evals" / "base" / f"seed-{seed}" / f"{eval_signature(cfg)}.json"
        record = {"seed": seed, "step": 0, "flops": flops_of(arm.kind, n, d_init, None)}
        emt = self.spec.evaluation.emt
        payload = cached_evaluation(base_eval, cfg, policy, self.variants, record, emt)
        records.append({**payload, "arm": arm.name, "kind": arm.kind})
        for point in arm_points(arm.kind, arm.checkpoints, unit):
            if self.stop.requested:
                return f"stopped by {self.stop.name} while evaluating"
            record = {
                "arm": arm.name,
                "kind": arm.kind,
                "seed": seed,
                "step": point.step,
                "flops": flops_of(arm.kind, n, d_init, point),
                "tokens": {"d_sft": point.d_sft, "d_rl": point.d_rl, "d_buffer": point.d_buffer},
            }
            path = self.eval_path(arm.name, seed, point.step)
            records.append(cached_evaluation(path, cfg, point.policy, self.variants, record, emt))
        if not done:
            write_json(unit / DONE, {"arm": arm.name, "seed": seed, "time": time.time()})
            _say(f"{tag}: evaluated {len(records)} checkpoints")
        return records

    def report(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        info = json.loads((self.base_dir(self.seeds[0]) / BASE_INFO).read_text())
        extra = {
            "episodes": self.spec.evaluation.episodes,
            "n_params": info["n_params"],
            "d_init": info["d_init"],
            "variant_kwargs": self.variants,
        }
        if self.spec.evaluation.emt is not None:
            extra["emt_dataset"] = self.spec.evaluation.emt.dataset
        return write_report(
            self.out,
            self.spec.name,
            records,
            self.spec.arms,
            self.spec.evaluation.variants(),
            self.spec.evaluation.metric,
            self.seeds,
            extra,
        )

    def run(self) -> dict[str, Any]:
        """The whole study; returns the table (``stopped`` set when a signal ended it)."""
        self.prepare()
        records: list[dict[str, Any]] = []
        t0 = time.time()
        for seed in self.seeds:
            for arm in self.spec.arms:
                result = self.run_unit(arm, seed)
                if isinstance(result, str):
                    if records:
                        self.report(records)
                    _say(f"[{self.spec.name}] {result}; rerun the command to go on")
                    return {"stopped": result, "signal": self.stop.signum}
                records += result
                self.report(records)  # a partial figure while the study goes on
                if self.stop.requested:
                    _say(f"[{self.spec.name}] stopped by {self.stop.name}; rerun to go on")
                    return {"stopped": self.stop.name, "signal": self.stop.signum}
        table = self.report(records)
        _say(f"[{self.spec.name}] complete in {time.time() - t0:.0f} s: {self.out}")
        return table


def run_study(
    spec: StudySpec,
    out_root: Path,
    stop: StopRequest | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """Run (or finish) ``spec`` under ``out_root/<name>``; ``seeds``: some of its seeds
    only (a shortened run; a later run with the others adds them)."""
    return Study(spec, out_root, stop, seeds).run()
