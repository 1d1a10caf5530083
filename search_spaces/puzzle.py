"""The ``puzzle`` space: students assembled from a Puzzle replacement library, one gene per parent layer.

A ``studentnas puzzle`` run (``OUT/puzzle/``) cuts an image teacher into parent layers and trains a
library of replacements for each (METHODS.md §3). This space makes any selection from that library a
student that the rest of studentnas handles like a searched one: ``studentnas distill`` trains it with
Ray Tune, ``export``/``load_student`` round-trip it, proxies can score it.

* **Genes:** ``L00 .. L{n-1}``, one per parent layer. A gene's choices are the labels of the library's
  usable (scored, not failed) replacements that start at that layer, costliest first (the teacher's
  own block first), plus ``-`` where a two-layer replacement may cover the layer from the one before.
  ``canonical`` makes every gene vector a valid cover: after a two-layer choice the next gene is ``-``,
  and a ``-`` that nothing covers becomes the teacher's block. So sampling, mutation, crossover, the
  integer encoding and budget repair all stay inside the space.
* **Build:** prefix and suffix are copies of the teacher's (its checkpoint when the file is there);
  each block gets its BLD weights from the run, or, for a library without a run, the family's
  initialisation from the parent block (pruned by channel importance, ...).
* **Cost:** the library's block tables (params and MACs, counted on the real modules at the teacher's
  input size), so ``cost`` is a sum and matches a counted build.

Build one from a run with ``PuzzleSpace.from_run("OUT/puzzle")`` (what ``studentnas puzzle`` records in
the run directories it writes for ``studentnas distill``), or from a teacher alone with
``get_space("puzzle", teacher=spec.to_dict(), library={...})``. It is never picked from ``--teacher``
by ``studentnas search``: the library belongs to one teacher checkpoint.

Example:
    >>> import numpy as np
    >>> from studentnas import get_space
    >>> from studentnas.puzzle.samples import teacher_spec
    >>> spec = teacher_spec("resnet18", None, image_size=32, num_classes=10)
    >>> space = get_space("puzzle", teacher=spec.to_dict(), library={"widths": [0.5], "merge_widths": []})
    >>> arch = space.sample(np.random.default_rng(0))
    >>> len(arch.genes), space.decode(space.encode(arch)) == arch
    (8, True)
    >>> space.cost(space.smallest()).macs < space.cost(space.teacher_arch()).macs
    True
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from studentnas.core.arch import Arch, GeneValue
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES
from studentnas.core.space import Gene, GeneSpace

COVERED = "-"  # the gene value of a layer covered by the two-layer replacement chosen before it


def _gene(layer: int) -> str:
    return f"L{layer:02d}"


@SPACES.register()
class PuzzleSpace(GeneSpace):
    """Students assembled from a Puzzle replacement library (see the module docstring)."""

    name = "puzzle"

    def __init__(self, library: Any = None, teacher: Any = None, run: str | Path | None = None,
                 options: dict[str, Any] | None = None):
        if library is None or teacher is None:
            raise BadInputError("the 'puzzle' space is the replacement library of one teacher: make it with "
                                "`studentnas puzzle --teacher ... --out OUT` and distil its students with "
                                "`studentnas distill OUT/puzzle/candidates/<budget>`; it cannot be searched from "
                                "--teacher (pick another --space, see `studentnas list spaces`)")
        if teacher.is_lm:
            raise BadInputError(f"the 'puzzle' space holds image students; '{teacher.name}' is a language model, "
                                "whose Puzzle students `studentnas puzzle` distils itself (--gkd-steps)")
        self.library, self.teacher = library, teacher
        self.run = None if run is None else Path(run).resolve()
        self.options = dict(options or {})
        self.default_input_size = tuple(teacher.input_shape)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_run(cls, root: str | Path) -> PuzzleSpace:
        """The space of a ``studentnas puzzle`` run directory (``OUT/puzzle``): its scored library."""
        from studentnas.puzzle.library import Library
        from studentnas.puzzle.samples import TeacherSpec

        root = Path(root)
        try:
            identity = json.loads((root / "config.json").read_text())["identity"]
            library = Library.from_dict(json.loads((root / "library.json").read_text()))
        except FileNotFoundError as err:
            raise BadInputError(f"'{root}' is not a finished Puzzle run ({Path(err.filename).name} is missing); "
                                "run `studentnas puzzle` to the end first") from None
        except (ValueError, KeyError) as err:
            raise BadInputError(f"'{root}' holds a corrupt Puzzle run ({err}); rerun `studentnas puzzle`") from None
        return cls(library, TeacherSpec.from_dict(identity["teacher"]), root, identity.get("library"))

    @classmethod
    def from_teacher(cls, teacher: Any, options: dict[str, Any] | None = None) -> PuzzleSpace:
        """The untrained library of a teacher (:class:`~studentnas.puzzle.samples.TeacherSpec`): params and
        MACs only, blocks initialised from their parents."""
        from studentnas.puzzle import costs
        from studentnas.puzzle.decompose import family_for

        model = teacher.load()
        family = family_for(model)
        dec = family.decompose(model, teacher.input_shape)
        library = costs.costed_library(dec, family, options or {}, teacher.context, latency=False)
        return cls(library, teacher, None, options)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PuzzleSpace:
        """The run's library when its folder is here; else the teacher's untrained one (enough to rebuild the
        architecture of an exported student, whose weights come from its file)."""
        from studentnas.puzzle.samples import TeacherSpec

        run = config.get("run")
        if run is not None and (Path(run) / "library.json").is_file():
            return cls.from_run(run)
        if "teacher" not in config:
            raise BadInputError(f"puzzle space config {config}: needs 'run' (a studentnas puzzle folder that exists) "
                                "or 'teacher' (a TeacherSpec dict)")
        teacher = TeacherSpec.from_dict(config["teacher"])
        if teacher.checkpoint is not None and not Path(teacher.checkpoint).is_file():
            teacher = TeacherSpec.from_dict({**teacher.to_dict(), "checkpoint": None})  # architecture only
        return cls.from_teacher(teacher, config.get("library"))

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "teacher": self.teacher.to_dict(), "library": self.options}
        if self.run is not None:
            out["run"] = str(self.run)
        return out

    # ------------------------------------------------------------------ genes

    @cached_property
    def _choices(self) -> list[dict[str, Any]]:
        """Per layer: label -> usable entry starting there, costliest first."""
        usable = [e for e in self.library.entries if e.ok]
        out: list[dict[str, Any]] = [{} for _ in range(self.library.num_layers)]
        for entry in sorted(usable, key=lambda e: (-e.costs.get("macs", 0.0), -e.costs.get("params", 0.0),
                                                   e.replacement.label)):
            out[entry.replacement.start][entry.replacement.label] = entry
        for layer, options in enumerate(out):
            if not any(e.replacement.width == 1 for e in options.values()):
                raise BadInputError(f"the Puzzle library has no usable one-layer replacement for layer {layer} "
                                    f"({self.library.layers[layer].name}); rerun `studentnas puzzle`")
        return out

    def genes(self) -> list[Gene]:
        genes = []
        for layer, options in enumerate(self._choices):
            spanned = layer > 0 and any(e.replacement.width > 1 for e in self._choices[layer - 1].values())
            genes.append(Gene(_gene(layer), (*options, *((COVERED,) if spanned else ()))))
        return genes

    def canonical(self, genes: dict[str, GeneValue]) -> dict[str, GeneValue]:
        out, covered_until = {}, 0
        for layer, options in enumerate(self._choices):
            value = genes[_gene(layer)]
            if layer < covered_until:
                value = COVERED
            else:
                if value == COVERED or value not in options:
                    value = next(label for label, e in options.items() if e.replacement.width == 1)
                covered_until = layer + options[value].replacement.width
            out[_gene(layer)] = value
        return out

    def chosen(self, arch: Arch) -> list[Any]:
        """The library entries of ``arch``, in layer order."""
        arch = self.validate(arch)
        return [self._choices[layer][arch[_gene(layer)]] for layer in range(self.library.num_layers)
                if arch[_gene(layer)] != COVERED]

    def arch_of(self, replacements: Any) -> Arch:
        """The arch that picks ``replacements`` (a cover of every layer, e.g. a MIP solution)."""
        from studentnas.puzzle.decompose import ordered_cover

        genes: dict[str, GeneValue] = {}
        for rep in ordered_cover(list(replacements), self.library.num_layers):
            genes[_gene(rep.start)] = rep.label
            genes.update({_gene(i): COVERED for i in range(rep.start + 1, rep.end)})
        return self.make(**genes)

    def teacher_arch(self) -> Arch:
        """The teacher itself: its own block at every layer."""
        return self.make(**{_gene(i): f"teacher@{i}" for i in range(self.library.num_layers)})

    def smallest(self) -> Arch:
        """Fewest MACs (then params): a shortest path over the layers, two-layer spans included."""
        n = self.library.num_layers
        best: list[tuple[float, float, list[Any]]] = [(0.0, 0.0, [])] * (n + 1)
        for layer in range(n - 1, -1, -1):
            best[layer] = min(((e.costs.get("macs", 0.0) + best[e.replacement.end][0],
                                e.costs.get("params", 0.0) + best[e.replacement.end][1],
                                [e.replacement, *best[e.replacement.end][2]])
                               for e in self._choices[layer].values()), key=lambda t: (t[0], t[1]))
        return self.arch_of(best[0][2])

    # ------------------------------------------------------------------ models and costs

    def _check(self, input_size: tuple[int, ...] | None, num_classes: int | None, in_chans: int | None = None) -> None:
        size = tuple(self.default_input_size)
        if input_size is not None and tuple(input_size) != size:
            raise BadInputError(f"Puzzle students have the teacher's input size {size}, not {tuple(input_size)}: "
                                f"its library's costs and BLD weights were made at that size; use --image-size "
                                f"{size[-1]}")
        if in_chans is not None and in_chans != size[0]:
            raise BadInputError(f"Puzzle students take the teacher's {size[0]} input channels, not {in_chans}")
        classes = self.teacher.num_classes
        if num_classes is not None and classes is not None and num_classes != classes:
            raise BadInputError(f"Puzzle students keep the teacher's head of {classes} classes, not {num_classes}; "
                                "use data with the teacher's classes")

    def cost(self, arch: Arch, input_size: tuple[int, int, int] | None = None, num_classes: int | None = None) -> Cost:
        self._check(input_size, num_classes)
        chosen = self.chosen(arch)
        return Cost(macs=self.library.total_cost(chosen, "macs"), params=self.library.total_cost(chosen, "params"))

    @cached_property
    def _parts(self) -> tuple[Any, Any]:
        from studentnas.puzzle.decompose import family_for

        model = self.teacher.load()
        family = family_for(model, self.library.family)
        return family.decompose(model, self.teacher.input_shape), family

    def build(self, arch: Arch, num_classes: int | None = None, in_chans: int | None = None) -> nn.Module:
        """The assembled student (train mode, every weight trainable): BLD weights when built from a run."""
        from studentnas.puzzle.realise import realise

        self._check(None, num_classes, in_chans)
        dec, family = self._parts
        return realise(dec, family, [e.replacement for e in self.chosen(arch)], self.run).train()

    def format_arch(self, arch: Arch) -> str:
        """``puzzle(bottleneck(width=0.5)@0, teacher@1, merge(width=1.0)@2-3, ...)``: the chosen labels."""
        return f"{self.name}({', '.join(e.replacement.label for e in self.chosen(arch))})"
