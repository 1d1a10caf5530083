"""The four picks of the search-quality study under one budget, and every student's proxy scores.

* ``diswot`` and ``classic``: the best student of a real :func:`studentnas.engine.search.search` with that proxy;
* ``largest_params``: the most parameters that fit (best of uniform draws, then hill-climbing);
* ``random``: uniform draws that fit (rejection sampling).

Example:
    >>> from studentnas.core.registry import SPACES
    >>> space = SPACES.get("resnet")()
    >>> cost = lambda a: space.cost(a, (3, 32, 32), 10)
    >>> fits = lambda a: cost(a).params < 5e6
    >>> archs, draws = random_students(space, fits, 2, np.random.default_rng(0))
    >>> len(archs), all(fits(a) for a in archs)
    (2, True)
    >>> big, info = largest_params(space, fits, cost, 20, np.random.default_rng(0))
    >>> fits(big), info["params"] >= info["sampled_params"], info["draws"]
    (True, True, 20)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studentnas.core.arch import Arch
from studentnas.core.budget import Budget
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.core.proxy import ProxyContext
from studentnas.core.registry import PROXIES
from studentnas.core.space import SearchSpace
from studentnas.data.images import calibration_batch, load_images
from studentnas.data.teachers import Teacher
from studentnas.engine.evaluate import LocalEvaluator
from studentnas.engine.search import search
from studentnas.studies.search_quality.folder import Study
from studentnas.studies.settings import Settings, budget_texts

PICKS = ("diswot", "classic", "largest_params", "random")


def largest_params(space: SearchSpace, fits: Callable[[Arch], bool], cost: Callable[[Arch], Cost], samples: int,
                   rng: np.random.Generator) -> tuple[Arch, dict[str, Any]]:
    """The largest-params student that fits: best of ``samples`` uniform draws, then hill-climbing on
    single-gene changes (the change with the most params that still fits, until none adds params)."""
    best, drawn = None, 0
    for _ in range(samples):
        arch = space.sample(rng)
        if fits(arch) and (best is None or cost(arch).params > cost(best).params):
            best = arch
        drawn += 1
    if best is None:
        raise BadInputError(f"none of {samples} uniform draws from space '{space.name}' fits the budget; raise "
                            "--budget or --params-samples")
    start_params, steps = cost(best).params, 0
    low, high = space.bounds
    while True:
        vec = space.encode(best)
        neighbours = []
        for i in range(len(vec)):
            for value in range(int(low[i]), int(high[i]) + 1):
                if value != vec[i]:
                    changed = vec.copy()
                    changed[i] = value
                    neighbours.append(space.decode(changed))
        better = [a for a in neighbours if fits(a) and cost(a).params > cost(best).params]
        if not better:
            break
        best = max(better, key=lambda a: (cost(a).params, a.id))
        steps += 1
    return best, {"draws": drawn, "sampled_params": start_params, "hill_climb_steps": steps,
                  "params": cost(best).params}


def random_students(space: SearchSpace, fits: Callable[[Arch], bool], n: int, rng: np.random.Generator,
                    max_draws: int = 500_000) -> tuple[list[Arch], int]:
    """``n`` distinct uniform draws that fit the budget (rejection sampling), and the draws it took."""
    found: dict[str, Arch] = {}
    for draw in range(1, max_draws + 1):
        arch = space.sample(rng)
        if arch.id not in found and fits(arch):
            found[arch.id] = arch
            if len(found) == n:
                return list(found.values()), draw
    raise BadInputError(f"only {len(found)} of {n} random students fit the budget in {max_draws} draws; "
                        "raise --budget or lower --random-students")


def search_pick(s: Settings, proxy: str, out: Path, checkpoint: Path, say: Callable[[str], None],
                quiet: bool) -> dict[str, Any]:
    """Run (or resume) ``studentnas.search`` with ``proxy``; the pick is its best-scoring student."""
    t0 = time.perf_counter()
    say(f"search with {proxy}: {s.candidates} candidates ({s.searcher}) in {out}")
    run = search(teacher=s.teacher, teacher_checkpoint=checkpoint, budget=budget_texts(s.budget), space=s.space,
                 proxy=proxy, searcher=s.searcher, candidates=s.candidates, data=s.data, image_size=s.image_size,
                 batch_size=s.calibration_batch, seed=s.seed, out=out, resume=True, quiet=quiet)
    ok = [c for c in run.candidates if c.ok]
    if not ok:
        raise BadInputError(f"the {proxy} search found no student under '{s.budget}' "
                            f"(stop reason: {run.config.get('stop_reason')}); raise --budget or use another --teacher")
    best = max(ok, key=lambda c: (c.score(proxy), -c.cost.macs))
    return {"proxy": proxy, "run_dir": str(out), "pick": best.id, "arch": best.arch.to_dict(),
            "pick_score": best.score(proxy), "candidates": len(run.candidates), "ok": len(ok),
            "stop_reason": run.config.get("stop_reason"), "searcher": s.searcher,
            "search_seconds": (run.config.get("timings") or {}).get("total"), "wall_seconds": time.perf_counter() - t0}


def choose_students(study: Study, s: Settings, checkpoint: Path, teacher: Teacher, space: SearchSpace,
                    budget: Budget, say: Callable[[str], None], quiet: bool) -> None:
    """Fill ``study.state['picks']`` and ``['students']`` (once; a rerun reuses them)."""
    if "picks" in study.state:
        return
    num_classes = teacher.num_classes

    def cost(a: Arch) -> Cost:
        return space.cost(a, s.input_size, num_classes)

    def fits(a: Arch) -> bool:
        return budget.satisfied(cost(a))

    searches = {name: search_pick(s, proxy, study.path / f"search-{proxy}", checkpoint, say, quiet)
                for name, proxy in (("diswot", "diswot"), ("classic", s.classic_proxy))}
    t0 = time.perf_counter()
    big, big_info = largest_params(space, fits, cost, s.params_samples, np.random.default_rng([s.seed, 2]))
    rand, draws = random_students(space, fits, s.random_students, np.random.default_rng([s.seed, 1]))
    picks = {"diswot": [searches["diswot"]["pick"]], "classic": [searches["classic"]["pick"]],
             "largest_params": [big.id], "random": [a.id for a in rand]}
    archs = {searches[k]["pick"]: Arch.from_dict(searches[k]["arch"]) for k in searches}
    archs.update({big.id: big, **{a.id: a for a in rand}})
    students = {}
    for arch_id, arch in archs.items():
        c = cost(arch)
        students[arch_id] = {"arch": arch.to_dict(), "label": space.format_arch(arch), "macs": c.macs,
                             "params": c.params, "roles": [k for k in PICKS if arch_id in picks[k]]}
    study.state.update(picks=picks, students=students, searches=searches,
                       sampling={"largest_params": big_info, "random_draws": draws,
                                 "seconds": time.perf_counter() - t0})
    study.save()
    for k in PICKS:
        for arch_id in picks[k]:
            say(f"pick {k}: {arch_id} {students[arch_id]['label']} ({students[arch_id]['macs'] / 1e6:.2f} MMACs, "
                f"{students[arch_id]['params'] / 1e6:.2f} M params)")


def score_students(study: Study, s: Settings, teacher: Teacher, space: SearchSpace, budget: Budget,
                   say: Callable[[str], None]) -> None:
    """Every student scored by diswot, the classic proxy and params, with the searches' calibration batch,
    seed and student initialisation (so a pick's score equals the one its search recorded)."""
    names = ["diswot", s.classic_proxy, "params"]
    scores = study.state.setdefault("scores", {})
    todo = [i for i in study.state["students"] if set(names) - set(scores.get(i, {}))]
    if not todo:
        return
    t0 = time.perf_counter()
    images = load_images(s.data, split="train", limit=s.calibration_batch, seed=s.seed)
    batch, labels = calibration_batch(images, s.calibration_batch, s.input_size, teacher.mean, teacher.std, s.seed)
    ctx = ProxyContext(images=batch.contiguous(memory_format=torch.channels_last), labels=labels,
                       num_classes=teacher.num_classes, teacher=teacher.model, teacher_trained=teacher.trained,
                       seed=s.seed)
    evaluator = LocalEvaluator(space, [PROXIES.get(n)() for n in names], ctx, budget, s.seed, teacher.num_classes)
    for arch_id in todo:
        arch = Arch.from_dict(study.state["students"][arch_id]["arch"])
        cand = evaluator.evaluate(arch, space.cost(arch, s.input_size, teacher.num_classes))
        if not cand.ok:
            raise RuntimeError(f"scoring student {arch_id} failed: {cand.reason}")
        scores[arch_id] = dict(cand.scores)
    study.state.setdefault("timings", {})["scoring"] = time.perf_counter() - t0
    study.save()
    say(f"scored {len(todo)} students with {', '.join(names)} in {time.perf_counter() - t0:.1f} s")
