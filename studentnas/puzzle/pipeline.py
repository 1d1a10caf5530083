"""``studentnas puzzle``: library -> BLD -> scoring -> MIP -> realise -> global KD, one resumable run.

Everything lives in ``RUN/puzzle/`` (docs/architecture.md, Conventions):

=========================  ==========================================================================
``config.json``            the run's identity (teacher, family, data, sample counts, BLD settings, seed)
``library.json``           parent layers and every replacement with its costs, quality and status
``acts/{bld,score}/``      the teacher's hidden states at every layer boundary (memmaps, float16/32)
``bld/<id>.{safetensors,json}``  each replacement's BLD weights and training record
``scores.jsonl``           one line per scored replacement (the scoring journal; resume reads it)
``solutions/<budget>.json``  MIP choice, re-check log, baselines and their measured quality
``students/<budget>.{safetensors,json}``  the realised student (after global KD when asked)
``candidates/<budget>/``   the budget's MIP, greedy and random students as a run directory for
                           ``studentnas distill`` (:mod:`studentnas.puzzle.handoff`)
``gkd/<budget>/``          the MIP student alone, where the global KD ran (``studentnas distill``)
``puzzle.json``            summary of every budget solved in this run; ``pareto.png`` plots them
=========================  ==========================================================================

Every stage skips finished work, so a killed run continues where it stopped; ``mip_only`` re-solves a
new budget from ``library.json`` without BLD or scoring (and without realising unless asked).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studentnas.core.budget import Budget
from studentnas.core.console import Progress, sayer
from studentnas.core.errors import BadInputError
from studentnas.puzzle import costs as cost_mod
from studentnas.puzzle.activations import ActivationStore
from studentnas.puzzle.bld import BLDJob, finished, load_trained, run_bld
from studentnas.puzzle.decompose import assemble, family_for
from studentnas.puzzle.library import COST_KEYS, Entry, Library, Replacement
from studentnas.puzzle.options import PuzzleOptions, run_identity, start_run
from studentnas.puzzle.samples import PuzzleSamples, TeacherSpec, image_samples, teacher_spec, text_samples
from studentnas.puzzle.scoring import evaluate_model, journalled_scores, score_replacement, scores_journal
from studentnas.runfiles.atomic import write_json_atomic

PUZZLE_DIR = "puzzle"


def _ids(solution: dict[str, Any]) -> list[str]:
    """Replacement ids of a solution's ``to_dict()`` form."""
    return [chosen["id"] for chosen in solution["chosen"]]


def _replacements(lib: Library, ids: Sequence[str]) -> list[Replacement]:
    """The library's replacements with these ids."""
    by_id = lib.by_id()
    return [by_id[i].replacement for i in ids]


class PuzzleRun:
    """One Puzzle run directory; :meth:`run` does every stage that is not done yet."""

    def __init__(self, opts: PuzzleOptions):
        self.opts = opts
        self.root = Path(opts.out) / PUZZLE_DIR
        self.say = sayer(opts.quiet)

    # ------------------------------------------------------------------ setup

    def _setup(self, need_data: bool) -> None:
        opts = self.opts
        self.budget = Budget.parse(opts.budget)
        if opts.metric not in ("kl", "acc", "loss"):
            raise BadInputError(f"--metric '{opts.metric}': must be kl (default), acc or loss")
        self.spec = teacher_spec(opts.teacher, opts.teacher_checkpoint, image_size=opts.image_size,
                                 num_classes=None, seed=opts.seed)
        if not self.spec.is_lm and self.spec.num_classes is None and opts.data is not None:
            from studentnas.data import images as data_mod

            classes = len(data_mod.load_images(opts.data, "test", limit=None).classes)
            self.spec = TeacherSpec(**{**self.spec.to_dict(), "num_classes": classes})
        self.teacher = self.spec.load()
        self.family = family_for(self.teacher)
        self.dec = self.family.decompose(self.teacher, self.spec.input_shape)
        unknown = [i.name for i in self.dec.infos if i.kind == "unknown"]
        if unknown:
            self.say(f"puzzle: the library does not understand {len(unknown)} block(s), kept as they are: "
                     f"{', '.join(unknown)}")
        self.samples: PuzzleSamples | None = None
        if need_data:
            self.samples = (text_samples(self.spec, opts.data, opts.bld_samples, opts.score_samples, opts.test_samples)
                            if self.spec.is_lm else
                            image_samples(self.spec, opts.data, opts.bld_samples, opts.score_samples,
                                          opts.test_samples, opts.seed))

    # ------------------------------------------------------------------ stages

    def _library(self) -> Library:
        """A new library with its block costs, in memory (:func:`.options.start_run` writes it)."""
        lib = cost_mod.costed_library(self.dec, self.family, self.opts.library, self.spec.context,
                                      quiet=self.opts.quiet)
        lib.meta.update({"teacher": self.spec.name, "input_shape": list(self.spec.input_shape)})
        return lib

    def _activations(self) -> None:
        assert self.samples is not None
        ident = {"teacher": self.spec.to_dict(), "data": self.opts.data, "seed": self.opts.seed}
        ActivationStore(self.root, "bld").record(self.dec, self.samples.bld, {**ident, "set": "bld",
                                                 "n": len(self.samples.bld)}, quiet=self.opts.quiet)
        ActivationStore(self.root, "score").record(self.dec, self.samples.score, {**ident, "set": "score",
                                                   "n": len(self.samples.score)}, dtype="float32",
                                                   quiet=self.opts.quiet)

    def _bld(self, lib: Library) -> dict[str, dict[str, Any]]:
        jobs = [BLDJob(str(self.root), self.spec.to_dict(), self.family.name, e.replacement.to_dict(),
                       asdict(self.opts.bld)) for e in lib.entries]
        todo = sum(finished(self.root, e.replacement) is None for e in lib.entries)
        self.say(f"puzzle: BLD of {len(jobs)} replacements ({todo} to train, {self.opts.bld.budget} samples each, "
                 f"{'in this process' if self.opts.workers <= 1 and not self.opts.ray_address else 'on Ray'})")
        results: dict[str, dict[str, Any]] = {}
        with Progress(total=len(jobs), desc="BLD", quiet=self.opts.quiet) as bar:
            def record(meta: dict[str, Any]) -> None:
                results[meta["id"]] = meta
                bar.update(1, nmse=float(meta.get("nmse", math.nan)))

            run_bld(jobs, workers=self.opts.workers, ray_address=self.opts.ray_address, on_result=record)
        return results

    def _score(self, lib: Library, bld: dict[str, dict[str, Any]]) -> Library:
        assert self.samples is not None
        journal = scores_journal(self.root)
        done = journalled_scores(journal)
        store = ActivationStore(self.root, "score")
        with Progress(total=len(lib.entries), desc="scoring", initial=0, quiet=self.opts.quiet) as bar:
            for entry in lib.entries:
                rep = entry.replacement
                if rep.id not in done:
                    row = self._score_one(rep, bld.get(rep.id, {}), store)
                    journal.append(row)
                    done[rep.id] = row
                row = done[rep.id]
                entry.quality, entry.status = dict(row.get("quality", {})), row["status"]
                bar.update(1)
        write_json_atomic(self.root / "library.json", lib.to_dict())
        return lib

    def _score_one(self, rep: Replacement, bld: dict[str, Any], store: ActivationStore) -> dict[str, Any]:
        assert self.samples is not None
        status = bld.get("status", "ok")
        if status != "ok":
            return {"id": rep.id, "label": rep.label, "status": status, "quality": {}}
        module = load_trained(self.dec, self.family, rep, self.root)
        quality = score_replacement(module, self.dec, rep, store, self.samples.score, self.samples.score_labels,
                                    is_lm=self.spec.is_lm)
        quality["nmse"] = float(bld.get("nmse", math.nan))
        bad = [k for k, v in quality.items() if not math.isfinite(v)]
        status = f"failed: non-finite {', '.join(bad)}" if bad else "ok"
        return {"id": rep.id, "label": rep.label, "status": status,
                "quality": {k: v for k, v in quality.items() if math.isfinite(v)}}

    # ------------------------------------------------------------------ MIP and realisation

    def _measure(self, chosen: Sequence[Entry], keys: Sequence[str]) -> dict[str, float]:
        student = assemble(self.dec, self.family, [e.replacement for e in chosen])
        return cost_mod.student_costs(student, self.spec.input_shape, dtype=self.spec.input_dtype,
                                      context=self.spec.context, latency="latency_ms" in keys)

    def _solve(self, lib: Library) -> dict[str, Any]:
        from studentnas.puzzle import baselines, mip

        limits = mip.limits_from_budget(self.budget, lib)
        start = time.perf_counter()
        solution, measured, log = mip.solve_with_recheck(
            lib, limits, lambda chosen: self._measure(chosen, list(limits)), metric=self.opts.metric,
            max_noops=self.opts.max_noops)
        seconds = time.perf_counter() - start
        optimum = solution
        solution, measured, rescored = self._rescore(lib, solution, measured, log[-1]["limits"], limits)
        greedy = baselines.greedy(lib, {k: v for k, v in log[-1]["limits"].items()}, metric=self.opts.metric)
        rng = np.random.default_rng(self.opts.seed)
        randoms = (baselines.random_feasible(lib, log[-1]["limits"], rng, n=self.opts.random_baselines)
                   if self.opts.random_baselines > 0 else [])  # --random-baselines 0: no random baseline
        return {"budget": self.budget.texts, "limits": limits, "metric": self.opts.metric, "mip": solution.to_dict(),
                "measured": measured, "recheck_log": log, "solve_and_recheck_seconds": seconds,
                "mip_optimum": optimum.to_dict(), "mip_candidates": rescored,
                "greedy": greedy.to_dict(), "random": [r.to_dict() for r in randoms]}

    def _rescore(self, lib: Library, first: Any, measured: dict[str, float], table_limits: dict[str, float],
                 limits: dict[str, float]) -> tuple[Any, dict[str, float], list[dict[str, Any]]]:
        """Re-score the MIP's top solutions as whole students (METHODS.md §3.10): block scores add up only
        approximately, so ``--mip-candidates`` diverse solutions (each differing from the earlier ones in at
        least ``ceil(--mip-diversity x layers)`` layers) are realised, BN-recalibrated and measured on the
        held-out score set; the best measured one is the MIP's answer. Without data (``--mip-only``) the
        plain optimum is kept."""
        from studentnas.puzzle import mip

        if self.opts.mip_candidates <= 1 or self.samples is None:
            return first, measured, []
        sols = mip.solve_diverse(lib, table_limits, self.opts.mip_candidates, self.opts.mip_diversity,
                                 metric=self.opts.metric, max_noops=self.opts.max_noops)
        teacher_logits = ActivationStore(self.root, "score").batch("logits", slice(None))
        rows, best = [], None
        for rank, sol in enumerate(sols):
            costs = measured if sol.ids == first.ids else self._measure(sol.chosen, list(limits))
            fits = all(costs[k] <= v * (1 + 1e-9) for k, v in limits.items())
            row: dict[str, Any] = {"rank": rank + 1, "labels": sol.labels, "objective": sol.objective,
                                   "measured": costs, "fits": fits}
            if row["fits"]:
                _, quality = self._evaluate_choice(lib, sol.ids, self.samples.score, self.samples.score_labels,
                                                   teacher_logits)
                row["score_set"] = quality
                value = -quality["acc"] if self.opts.metric == "acc" else quality[self.opts.metric]
                if best is None or value < best[0]:
                    best = (value, sol, costs)
            rows.append(row)
        if best is None:
            return first, measured, rows
        self.say(f"puzzle: re-scored {len(sols)} MIP solutions as whole students on the score set; "
                 f"rank {sols.index(best[1]) + 1} by summed block {self.opts.metric} is the best measured")
        return best[1], best[2], rows

    def _evaluate_choice(self, lib: Library, ids: Sequence[str], inputs: torch.Tensor | None = None,
                         labels: torch.Tensor | None = None,
                         teacher_logits: torch.Tensor | None = None) -> tuple[Any, dict[str, Any]]:
        """Realise ``ids``, recalibrate BN on the BLD samples, measure on ``inputs`` (default: the test set)."""
        assert self.samples is not None
        from studentnas.puzzle.realise import realise, recalibrate_bn

        student = realise(self.dec, self.family, _replacements(lib, ids), self.root)
        recalibrate_bn(student, self.samples.bld)
        if inputs is None:
            inputs, labels = self.samples.test, self.samples.test_labels
        quality = evaluate_model(student, self.teacher, inputs, labels, is_lm=self.spec.is_lm,
                                 teacher_logits=teacher_logits)
        return student, quality

    def run(self) -> dict[str, Any]:
        opts = self.opts
        start = time.perf_counter()
        if opts.mip_only:
            return self._mip_only()
        self._setup(need_data=True)
        lib = start_run(self.root, run_identity(opts, self.spec, self.family.name), opts.fresh, self._library,
                        self.budget, opts.max_noops)  # writes nothing until every check passed
        self._activations()
        bld = self._bld(lib)
        lib = self._score(lib, bld)
        return self._finish(lib, start, realise_students=True)

    def _mip_only(self) -> dict[str, Any]:
        path = self.root / "library.json"
        if not path.is_file():
            raise BadInputError(f"--mip-only needs a scored library, but {path} does not exist; run `studentnas "
                                "puzzle` without --mip-only first")
        lib = Library.from_dict(json.loads(path.read_text()))
        if not any(e.quality for e in lib.entries):
            raise BadInputError(f"{path} has no scores yet (the run stopped before scoring); rerun without --mip-only")
        config = json.loads((self.root / "config.json").read_text())["identity"]
        self.opts.teacher, self.opts.data = config["teacher"]["name"], config["data"]
        self.budget = Budget.parse(self.opts.budget)
        self.spec = TeacherSpec.from_dict(config["teacher"])
        self.teacher = self.spec.load()
        self.family = family_for(self.teacher, config["family"])
        self.dec = self.family.decompose(self.teacher, self.spec.input_shape)
        self.samples = None
        return self._finish(lib, time.perf_counter(), realise_students=False)

    def _finish(self, lib: Library, start: float, realise_students: bool) -> dict[str, Any]:
        result = self._solve(lib)
        slug = self.budget.slug()
        self.say(f"puzzle: MIP under {self.budget.describe()}: {result['mip']['objective']:.4g} summed "
                 f"{self.opts.metric} in {result['solve_and_recheck_seconds']:.2f} s "
                 f"({len(result['recheck_log'])} solve(s)); measured {cost_mod.summarize(result['measured'])}")
        if realise_students:
            result["evaluation"] = self._realise(lib, result, slug)
        write_json_atomic(self.root / "solutions" / f"{slug}.json", result)
        summary = self._summary(lib, result, slug, time.perf_counter() - start)
        return summary

    def _realise(self, lib: Library, result: dict[str, Any], slug: str) -> dict[str, Any]:
        from studentnas.puzzle.realise import export_puzzle_student

        assert self.samples is not None
        evaluation: dict[str, Any] = {"teacher": evaluate_model(self.teacher, self.teacher, self.samples.test,
                                                                self.samples.test_labels, is_lm=self.spec.is_lm)}
        student, evaluation["mip"] = self._evaluate_choice(lib, _ids(result["mip"]))
        _, evaluation["greedy"] = self._evaluate_choice(lib, _ids(result["greedy"]))
        evaluation["random"] = [self._evaluate_choice(lib, _ids(r))[1] for r in result["random"]]
        if self.spec.is_lm:
            evaluation["mip_after_gkd"], evaluation["gkd"] = self._global_kd_lm(student)
        else:
            everyone, gkd, mip_id = self._candidates_run(lib, result, evaluation, slug)
            evaluation["candidates_run"] = str(everyone)
            student, evaluation["mip_after_gkd"], evaluation["gkd"] = self._global_kd_images(student, gkd, mip_id)
            if "skipped" in evaluation["gkd"]:
                evaluation["gkd_skipped"] = evaluation["gkd"]["skipped"]  # kept in puzzle.json (gkd is not)
        chosen = _replacements(lib, _ids(result["mip"]))
        out = self.root / "students" / f"{slug}.safetensors"
        export_puzzle_student(out, student, self.spec, self.family.name, chosen, {
            "budget": self.budget.texts, "costs": result["measured"], "quality_before_gkd": evaluation["mip"],
            "quality_after_gkd": evaluation["mip_after_gkd"], "teacher_quality": evaluation["teacher"],
            "data": self.opts.data})
        evaluation["file"] = str(out)
        return evaluation

    def _candidates_run(self, lib: Library, result: dict[str, Any], evaluation: dict[str, Any],
                        slug: str) -> tuple[Path, Path, str]:
        """The budget's selections as run directories for ``studentnas distill`` (:mod:`.handoff`): every
        selection in ``candidates/<budget>`` (the user's), the MIP student alone in ``gkd/<budget>`` (the
        pipeline's global KD, so the two distillations never share a folder); and the MIP's arch id."""
        from studentnas.core.registry import SPACES
        from studentnas.puzzle.handoff import CANDIDATES_DIR, GKD_DIR, write_candidates_run

        def replacements(solution: dict[str, Any]) -> list[Replacement]:
            return _replacements(lib, _ids(solution))

        mip = ("mip", replacements(result["mip"]), evaluation["mip"])
        others = [("greedy", replacements(result["greedy"]), evaluation["greedy"]),
                  *((f"random{k + 1}", replacements(r), q)
                    for k, (r, q) in enumerate(zip(result["random"], evaluation["random"], strict=True)))]
        space = SPACES.get("puzzle")(lib, self.spec, self.root, self.opts.library)
        folders = self.root / CANDIDATES_DIR / slug, self.root / GKD_DIR / slug
        common = {"data": self.opts.data, "seed": self.opts.seed, "budget": self.budget.texts}
        write_candidates_run(folders[0], space, self.spec, [mip, *others], **common)
        ids = write_candidates_run(folders[1], space, self.spec, [mip], **common)
        return folders[0], folders[1], ids["mip"]

    def _global_kd_lm(self, student: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        from studentnas.puzzle.realise import global_kd_lm

        assert self.samples is not None
        info = global_kd_lm(student, self.teacher, self.samples.bld, steps=self.opts.gkd_steps, seed=self.opts.seed)
        return evaluate_model(student, self.teacher, self.samples.test, None, is_lm=True), info

    def _global_kd_images(self, student: Any, folder: Path,
                          arch_id: str) -> tuple[Any, dict[str, Any] | None, dict[str, Any]]:
        """The MIP student after one fixed-recipe trial of ``studentnas distill`` on its run directory
        ``folder`` (:func:`.handoff.global_kd`); skipped, with the reason, for a randomly initialised teacher."""
        from studentnas.puzzle.handoff import global_kd
        from studentnas.runfiles.models import load_model

        assert self.samples is not None
        if self.spec.checkpoint is None:
            reason = ("skipped: the teacher is randomly initialised, so there is nothing to distil; pass "
                      "--teacher-checkpoint (`studentnas teacher train` makes one)")
            self.say(f"puzzle: global KD {reason}")
            return student, None, {"skipped": reason}
        path, info = global_kd(folder, arch_id, str(self.opts.data), epochs=self.opts.gkd_epochs,
                               train_images=self.opts.bld_samples, test_images=self.opts.test_samples,
                               seed=self.opts.seed, ray_address=self.opts.ray_address, quiet=self.opts.quiet)
        student = load_model(path)
        quality = evaluate_model(student, self.teacher, self.samples.test, self.samples.test_labels, is_lm=False)
        return student, quality, info

    def _summary(self, lib: Library, result: dict[str, Any], slug: str, seconds: float) -> dict[str, Any]:
        path = self.root / "puzzle.json"
        summary = json.loads(path.read_text()) if path.is_file() else {"solutions": {}}
        summary.update({"teacher": self.spec.to_dict(), "family": lib.family, "layers": lib.num_layers,
                        "entries": len(lib.entries), "failed_entries": sum(not e.ok for e in lib.entries),
                        "teacher_costs": {k: lib.teacher_cost(k) for k in COST_KEYS}})
        row = {k: result[k] for k in ("budget", "limits", "metric", "measured", "solve_and_recheck_seconds")}
        row["mip_objective"] = result["mip_optimum"]["objective"]  # the least summed block score
        row["chosen_objective"] = result["mip"]["objective"]  # of the re-scored pick
        row["greedy_objective"] = result["greedy"]["objective"]
        row["random_objectives"] = [r["objective"] for r in result["random"]]
        row["greedy_macs"] = result["greedy"]["costs"]["macs"]  # by the tables; only the MIP's is re-measured
        row["random_macs"] = [r["costs"]["macs"] for r in result["random"]]
        if "evaluation" in result:
            row["evaluation"] = {k: v for k, v in result["evaluation"].items() if k != "gkd"}
        summary["solutions"][slug] = row
        summary["seconds_last_call"] = seconds
        write_json_atomic(path, summary)
        if "evaluation" in row:
            from studentnas.puzzle.plot import write_pareto_plot

            write_pareto_plot(self.root.parent)
        summary["last"] = slug
        return summary
