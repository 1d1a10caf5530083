"""``SearchSpace``: the contract every search-space plugin implements, and ``GeneSpace``, a base
class for spaces that are a product of discrete genes (all of ours are).

Lifecycle: a searcher calls ``sample``/``mutate``/``crossover`` (or ``decode`` on an integer vector
within ``bounds``) to propose an :class:`~studentnas.core.arch.Arch`; the engine checks it against the
budget with ``cost`` (analytic, no model is built), and only then calls ``build`` to get a timm-style
``nn.Module`` (``forward_features``, ``forward_head``, ``num_features``).

Example:
    >>> import numpy as np
    >>> from studentnas import get_space
    >>> space = get_space("nb201")
    >>> arch = space.sample(np.random.default_rng(0))
    >>> space.decode(space.encode(arch)) == arch
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from torch import nn

from studentnas.core.arch import Arch, GeneValue
from studentnas.core.cost import Cost
from studentnas.core.errors import BadInputError
from studentnas.core.registry import SPACES

if TYPE_CHECKING:
    from studentnas.hardware.latency_table import Layer


class SearchSpace(ABC):
    """Abstract search space. Subclasses set ``name`` and ``default_input_size`` and implement the
    abstract methods. ``for_teacher`` derives a space centred on a teacher module."""

    name: ClassVar[str] = ""
    default_input_size: ClassVar[tuple[int, int, int]] = (3, 224, 224)

    # --- generation and variation ---------------------------------------------------------------
    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch: ...

    @abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch: ...

    @abstractmethod
    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch: ...

    # --- integer encoding for pymoo / Optuna ----------------------------------------------------
    @property
    @abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer (lower, upper) bounds of the encoding."""

    @abstractmethod
    def encode(self, arch: Arch) -> np.ndarray: ...

    @abstractmethod
    def decode(self, vector: Sequence[int] | np.ndarray) -> Arch: ...

    # --- models and costs ---------------------------------------------------------------------
    @abstractmethod
    def build(self, arch: Arch, num_classes: int = 1000, in_chans: int = 3) -> nn.Module: ...

    @abstractmethod
    def cost(self, arch: Arch, input_size: tuple[int, int, int] | None = None, num_classes: int = 1000) -> Cost:
        """Analytic cost of one image of ``input_size`` (C, H, W); fast (>= 1000 archs/s)."""

    @abstractmethod
    def smallest(self) -> Arch:
        """The architecture with the fewest MACs in this space."""

    def min_cost(self, input_size: tuple[int, int, int] | None = None, num_classes: int = 1000) -> Cost:
        """The lowest value of each cost metric over the space: the per-metric minimum over
        :meth:`minimal_archs` (the fewest MACs and the fewest params may be different archs)."""
        costs = [self.cost(a, input_size, num_classes) for a in self.minimal_archs()]
        return Cost(macs=min(c.macs for c in costs), params=min(c.params for c in costs))

    def minimal_archs(self) -> list[Arch]:
        """Archs that together bound the space from below: every arch costs at least as much as one of
        them in every metric (MACs, params), at any input size. The cheapest arch for any budget is among
        them. Default: ``[smallest()]``; spaces whose cheapest arch depends on the metric or the input
        size (``resnet``: the stem) list several."""
        return [self.smallest()]

    # --- budget repair ------------------------------------------------------------------------
    def cheapest(self, measure: Callable[[Arch], float] | None = None) -> Arch:
        """The arch of :meth:`minimal_archs` with the lowest ``measure`` (default: analytic MACs at the
        default input size; ties: the smaller id). It is where :meth:`shrink` ends."""
        key = measure or self._default_measure
        return min(self.minimal_archs(), key=lambda a: (key(a), a.id))

    def shrink(self, arch: Arch, rng: np.random.Generator, measure: Callable[[Arch], float] | None = None,
               target: Arch | None = None) -> Iterator[Arch]:
        """Budget repair: successively cheaper archs on a path from ``arch`` to ``target`` (default:
        :meth:`cheapest` by ``measure``; a caller that repairs often passes it once computed), which is
        always the last one. A searcher that repairs takes the first one within its budget.

        ``measure`` ranks archs by cost, lower is cheaper (a searcher passes how far an arch is over its
        budget; default: analytic MACs at the default input size). This default jumps straight to the
        target; :class:`GeneSpace` walks there one gene at a time.
        """
        target = target if target is not None else self.cheapest(measure)
        if target != arch:
            yield target

    def _default_measure(self, arch: Arch) -> float:
        return self.cost(arch).macs

    def layers(self, arch: Arch, input_size: tuple[int, int, int] | None = None,
               num_classes: int = 1000) -> list[Layer] | None:
        """The network's layers at batch 1 for the latency lookup table, or ``None`` (the default).

        ``None`` means "no analytic list": :func:`studentnas.hardware.latency_table.space_layers` then
        traces a build on the ``meta`` device (any space works; about 0.1 s, and sums inside ``forward``
        are not seen). Spaces override it with an analytic list that includes residual adds
        (microseconds, no model is built).
        """
        return None

    # --- teacher-derived spaces ---------------------------------------------------------------
    @classmethod
    def matches_teacher(cls, teacher: nn.Module) -> bool:
        """True when ``for_teacher`` can centre this space on ``teacher`` (used to pick a default)."""
        return False

    @classmethod
    def for_teacher(cls, teacher: nn.Module) -> SearchSpace:
        """A space centred on ``teacher``. Spaces that do not depend on a teacher return a default instance."""
        return cls()

    # --- identity -----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """JSON-ready description of this instance (recorded in run.json and exported files)."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SearchSpace:
        return cls()

    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` if it belongs to this space, raise ``BadInputError`` otherwise."""
        if arch.space != self.name:
            raise BadInputError(f"arch {arch.id} is from space '{arch.space}', not '{self.name}'")
        return arch

    def format_arch(self, arch: Arch) -> str:  # pragma: no cover - default text form
        body = ",".join(f"{k}={v}" for k, v in arch.genes)
        return f"{self.name}({body})"


def space_from_config(config: dict[str, Any]) -> SearchSpace:
    """Rebuild the exact space instance recorded in a run or an exported file (``SearchSpace.config()``).

    >>> space_from_config({"name": "nb201", "C": 8, "N": 1}).config()
    {'name': 'nb201', 'C': 8, 'N': 1}
    """
    return SPACES.get(config["name"]).from_config(config)


@dataclass(frozen=True)
class Gene:
    """One discrete gene: a name and its ordered choices (ordered so that neighbours are similar)."""

    name: str
    choices: tuple[GeneValue, ...]

    def index(self, value: GeneValue) -> int:
        try:
            return self.choices.index(value)
        except ValueError:
            raise BadInputError(
                f"gene '{self.name}' = {value!r} is not one of its choices {list(self.choices)}"
            ) from None


class GeneSpace(SearchSpace):
    """A space that is the product of discrete :class:`Gene` s.

    Subclasses provide ``genes()`` and may override ``canonical`` to collapse genes that do not
    change the network (so that equal networks get equal ids). Sampling is uniform per gene;
    mutation changes one gene to a neighbouring or random other choice; crossover is uniform;
    budget repair (:meth:`shrink`) moves one gene one notch toward the cheapest arch per step.
    """

    def genes(self) -> list[Gene]:
        raise NotImplementedError

    def canonical(self, genes: dict[str, GeneValue]) -> dict[str, GeneValue]:
        """Normalise genes that have no effect (default: none)."""
        return genes

    def _gene_list(self) -> list[Gene]:
        cached = self.__dict__.get("_genes_cache")
        if cached is None:
            cached = self.genes()
            self.__dict__["_genes_cache"] = cached
        return cached

    def make(self, **genes: GeneValue) -> Arch:
        """An arch from gene values; every gene must be given and valid."""
        gl = self._gene_list()
        missing = [g.name for g in gl if g.name not in genes]
        unknown = sorted(set(genes) - {g.name for g in gl})
        if missing or unknown:
            raise BadInputError(f"space '{self.name}' needs genes {[g.name for g in gl]}; "
                                f"missing {missing}, unknown {unknown}")
        for g in gl:
            g.index(genes[g.name])
        return Arch(self.name, self.canonical(dict(genes)))

    def validate(self, arch: Arch) -> Arch:
        super().validate(arch)
        return self.make(**arch.as_dict())

    def sample(self, rng: np.random.Generator) -> Arch:
        return Arch(self.name, self.canonical({g.name: g.choices[int(rng.integers(len(g.choices)))]
                                               for g in self._gene_list()}))

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        genes = arch.as_dict()
        mutable = [g for g in self._gene_list() if len(g.choices) > 1]
        for _ in range(100):
            gene = mutable[int(rng.integers(len(mutable)))]
            i = gene.index(genes[gene.name])
            if len(gene.choices) > 4 and rng.random() < 0.7:  # long ordered ranges: mostly local steps
                j = int(np.clip(i + rng.choice([-2, -1, 1, 2]), 0, len(gene.choices) - 1))
            else:
                j = int(rng.integers(len(gene.choices)))
            child = Arch(self.name, self.canonical({**genes, gene.name: gene.choices[j]}))
            if child != arch:
                return child
        return self.sample(rng)

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        ga, gb = a.as_dict(), b.as_dict()
        return Arch(self.name, self.canonical({g.name: (ga if rng.random() < 0.5 else gb)[g.name]
                                               for g in self._gene_list()}))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        gl = self._gene_list()
        return np.zeros(len(gl), dtype=int), np.array([len(g.choices) - 1 for g in gl], dtype=int)

    def encode(self, arch: Arch) -> np.ndarray:
        genes = arch.as_dict()
        return np.array([g.index(genes[g.name]) for g in self._gene_list()], dtype=int)

    def decode(self, vector: Sequence[int] | np.ndarray) -> Arch:
        gl = self._gene_list()
        if len(vector) != len(gl):
            raise BadInputError(f"space '{self.name}' encodes {len(gl)} genes, got a vector of {len(vector)}")
        genes = {}
        for g, v in zip(gl, vector):
            i = int(v)
            if not 0 <= i < len(g.choices):
                raise BadInputError(f"gene '{g.name}' index {i} is outside 0..{len(g.choices) - 1}")
            genes[g.name] = g.choices[i]
        return Arch(self.name, self.canonical(genes))

    def size(self) -> int:
        """Number of gene combinations (an upper bound on distinct archs after canonicalisation)."""
        return int(np.prod([len(g.choices) for g in self._gene_list()], dtype=object))

    def shrink(self, arch: Arch, rng: np.random.Generator, measure: Callable[[Arch], float] | None = None,
               target: Arch | None = None) -> Iterator[Arch]:
        """Budget repair, one gene per step (a depth, a width, the ratio, the block kind, a cell's op...),
        always toward ``target`` (default: :meth:`cheapest` by ``measure``).

        A step moves one gene that differs from the target's either one notch toward the target's
        choice or straight to it (choices are ordered, so one notch is usually one size down; the
        jump covers orders that are not by cost). Of those steps the one with the largest saving of
        ``measure`` per notch moved is taken; ties go to the shorter move, then to ``rng`` (so the
        path is deterministic given the rng). Every step brings the arch closer to the target (summed
        index distance, after :meth:`canonical`), so the walk ends there after at most that many
        steps, even when a step has to cost more (e.g. a 7x7 stem that becomes a deep stem before it
        can narrow). Where no single step gets closer (genes tied by ``canonical``), it jumps there.

        Example:
            >>> import numpy as np
            >>> from studentnas import get_space
            >>> space = get_space("nb201")
            >>> arch = space.decode([4, 3, 2, 4, 1, 3])
            >>> path = list(space.shrink(arch, np.random.default_rng(0)))
            >>> [space.encode(a).tolist() for a in path[:3]]
            [[4, 2, 2, 4, 1, 3], [4, 2, 2, 4, 1, 2], [4, 2, 1, 4, 1, 2]]
            >>> path[-1] == space.cheapest() and all(space.cost(b).macs <= space.cost(a).macs
            ...                                      for a, b in zip([arch, *path], path))
            True
        """
        key = measure or self._default_measure
        target = target if target is not None else self.cheapest(key)
        genes = self._gene_list()
        index = {g.name: {v: i for i, v in enumerate(g.choices)} for g in genes}
        goal = {g.name: index[g.name][target[g.name]] for g in genes}

        def distance(values: dict[str, GeneValue]) -> int:
            return sum(abs(index[name][v] - goal[name]) for name, v in values.items())

        current, values = arch, arch.as_dict()
        here = distance(values)
        while current != target:
            now = key(current)
            steps: list[tuple[float, int, Arch]] = []  # (saving per notch, notches, arch)
            for g in genes:
                i, j = index[g.name][values[g.name]], goal[g.name]
                for k in sorted({i + (1 if j > i else -1), j}) if i != j else ():
                    moved = self.canonical({**values, g.name: g.choices[k]})
                    if distance(moved) < here:
                        step = Arch(self.name, moved)
                        steps.append(((now - key(step)) / abs(i - k), abs(i - k), step))
            if not steps:
                yield target
                return
            order = rng.permutation(len(steps))  # random tie-break: max() keeps the first of equal keys
            _, _, current = max((steps[int(n)] for n in order), key=lambda s: (s[0], -s[1]))
            values = current.as_dict()
            here = distance(values)
            yield current
