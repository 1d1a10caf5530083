"""The ``puzzle`` search space: a hand-made library whose genes, canonical covers and cheapest student are
worked out by hand, and a real resnet18 library whose builds match their counted costs."""

# ruff: noqa: I001  (studentnas before timm: it installs the torchvision shim)
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import studentnas  # noqa: F401
from studentnas import get_space
from studentnas.core.arch import Arch
from studentnas.hardware.counting import count_params, counted_macs
from studentnas.core.errors import BadInputError
from studentnas.puzzle.library import Entry, LayerInfo, Library, Replacement
from studentnas.puzzle.samples import TeacherSpec, teacher_spec
from studentnas.core.registry import SPACES

SPEC = TeacherSpec("resnet18", None, "image", (3, 32, 32), num_classes=10)


def _hand_library() -> Library:
    """3 layers. MACs: layer 0 teacher 10, a 6 (and a failed 1); layers 0-1 merged m 7; layer 1 teacher 10,
    b 3; layer 2 teacher 10, c 2. Covers: (a, b, c) = 11, (m, c) = 9 (the cheapest), the teacher 30."""
    layers = [LayerInfo(i, f"layer{i}", "bottleneck", (8, 4, 4), (8, 4, 4)) for i in range(3)]

    def entry(start: int, end: int, kind: str, macs: float, status: str = "ok") -> Entry:
        return Entry(Replacement(start, end, kind), {"macs": macs, "params": macs * 100}, {"kl": 0.1}, status)

    entries = [entry(0, 1, "teacher", 10), entry(0, 1, "a", 6), entry(0, 1, "broken", 1, "failed: nan"),
               entry(0, 2, "m", 7), entry(1, 2, "teacher", 10), entry(1, 2, "b", 3), entry(2, 3, "teacher", 10),
               entry(2, 3, "c", 2)]
    return Library("resnet", layers, entries, {"macs": 100.0, "params": 1000.0})


@pytest.fixture
def hand() -> object:
    return SPACES.get("puzzle")(_hand_library(), SPEC)


def test_genes_are_the_usable_choices_costliest_first(hand) -> None:
    genes = {g.name: g.choices for g in hand.genes()}
    assert genes == {"L00": ("teacher@0", "m@0-1", "a@0"),  # the failed entry is not offered
                     "L01": ("teacher@1", "b@1", "-"),  # '-': covered by a two-layer choice at layer 0
                     "L02": ("teacher@2", "c@2")}
    assert hand.bounds[1].tolist() == [2, 2, 1]


def test_canonical_makes_every_vector_a_cover(hand) -> None:
    assert hand.decode([1, 1, 1]).as_dict() == {"L00": "m@0-1", "L01": "-", "L02": "c@2"}  # b is covered by m
    assert hand.decode([2, 2, 0]).as_dict() == {"L00": "a@0", "L01": "teacher@1", "L02": "teacher@2"}  # '-' alone
    covers = {hand.decode(list(v)) for v in itertools.product(range(3), range(3), range(2))}
    # (teacher|a) x (teacher|b) x (teacher|c) = 8 one-layer covers, plus m x (teacher|c) = 2
    assert len(covers) == 10
    for arch in covers:
        assert hand.decode(hand.encode(arch)) == arch


def test_costs_smallest_and_chosen_replacements_by_hand(hand) -> None:
    smallest = hand.smallest()
    assert smallest.as_dict() == {"L00": "m@0-1", "L01": "-", "L02": "c@2"}
    assert hand.cost(smallest).macs == 100 + 7 + 2 and hand.cost(smallest).params == 1000 + 900
    assert hand.cost(hand.teacher_arch()).macs == 130
    assert [e.replacement.label for e in hand.chosen(smallest)] == ["m@0-1", "c@2"]
    assert hand.arch_of([Replacement(2, 3, "c"), Replacement(0, 2, "m")]) == smallest
    every = {hand.decode(list(v)) for v in itertools.product(range(3), range(3), range(2))}
    assert min(hand.cost(a).macs for a in every) == hand.cost(smallest).macs


def test_budget_repair_walks_down_to_the_cheapest(hand) -> None:
    path = list(hand.shrink(hand.teacher_arch(), np.random.default_rng(0)))
    assert path[-1] == hand.smallest()
    assert all(hand.cost(b).macs <= hand.cost(a).macs for a, b in zip([hand.teacher_arch(), *path], path))


def test_wrong_size_classes_or_teacher_are_refused(hand) -> None:
    with pytest.raises(BadInputError, match=r"input size \(3, 32, 32\)"):
        hand.cost(hand.smallest(), (3, 64, 64))
    with pytest.raises(BadInputError, match="10 classes, not 100"):
        hand.cost(hand.smallest(), None, 100)
    with pytest.raises(BadInputError, match="studentnas puzzle"):
        get_space("puzzle")
    with pytest.raises(BadInputError, match="language model"):
        SPACES.get("puzzle")(_hand_library(), TeacherSpec("gpt_tiny", None, "lm", (128,)))
    with pytest.raises(BadInputError, match="not one of its choices"):
        hand.validate(Arch("puzzle", {"L00": "x@0", "L01": "-", "L02": "c@2"}))


def test_untrained_resnet18_library_builds_students_whose_counted_costs_match() -> None:
    spec = teacher_spec("resnet18", None, image_size=32, num_classes=10)
    space = get_space("puzzle", teacher=spec.to_dict(), library={"widths": [0.5], "merge_widths": [1.0]})
    teacher = spec.load()
    full = space.build(space.teacher_arch(), num_classes=10, in_chans=3).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(full(x), teacher(x), atol=1e-5)  # the all-teacher choice is the teacher
    assert space.cost(space.teacher_arch()).params == count_params(teacher)
    small = space.build(space.smallest())
    assert space.cost(space.smallest()).params == count_params(small)
    assert space.cost(space.smallest()).macs == pytest.approx(counted_macs(small, (3, 32, 32)), rel=0.01)
    assert all(p.requires_grad for p in small.parameters()) and small.num_features == 512
