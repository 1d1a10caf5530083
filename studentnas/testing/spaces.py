"""Contract every ``SearchSpace`` must satisfy (raises ``AssertionError`` naming the broken rule).

Example:
    >>> from studentnas import get_space
    >>> check_space(get_space("nb201"), input_size=(3, 16, 16), n=1)
"""

from __future__ import annotations

import numpy as np
import torch

from studentnas.core.arch import Arch
from studentnas.core.space import SearchSpace
from studentnas.hardware.counting import count_params, counted_macs


def check_space(space: SearchSpace, input_size: tuple[int, int, int] | None = None, n: int = 4, seed: int = 0,
                num_classes: int = 10) -> None:
    """Sampling, variation, encoding, building and analytic cost of ``n`` random archs."""
    input_size = input_size or space.default_input_size
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    archs = [space.sample(rng_a) for _ in range(n)]
    assert archs == [space.sample(rng_b) for _ in range(n)], "sample() must be deterministic for a seed"
    lower, upper = space.bounds
    rng = np.random.default_rng(seed + 1)
    for arch in archs:
        assert isinstance(arch, Arch) and arch.space == space.name, "sample() must return an Arch of this space"
        assert space.validate(arch) == arch, "sampled archs must be valid and canonical"
        assert Arch.from_dict(arch.to_dict()) == arch, "Arch must round-trip through to_dict/from_dict"
        vec = space.encode(arch)
        assert np.all(vec >= lower) and np.all(vec <= upper), "encode() must stay within bounds"
        assert space.decode(vec) == arch, "decode(encode(arch)) must give the arch back"
        child = space.mutate(arch, rng)
        assert child != arch and space.validate(child) == child, "mutate() must return a different valid arch"
        mix = space.crossover(arch, archs[0], rng)
        assert space.validate(mix) == mix, "crossover() must return a valid arch"
        model = space.build(arch, num_classes=num_classes, in_chans=input_size[0])
        for attr in ("forward_features", "forward_head", "num_features"):
            assert hasattr(model, attr), f"built models must follow timm's contract: missing {attr}"
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(2, *input_size))
        assert out.shape == (2, num_classes), f"forward must give (2, {num_classes}) logits, got {tuple(out.shape)}"
        cost = space.cost(arch, input_size, num_classes)
        assert cost.params == count_params(model), f"analytic params {cost.params} != counted {count_params(model)}"
        counted = counted_macs(model, input_size)
        assert abs(cost.macs - counted) <= 0.01 * counted, f"analytic MACs {cost.macs} not within 1% of {counted}"
    smallest = space.smallest()
    low = space.cost(smallest, input_size, num_classes)
    for arch in archs:
        assert space.cost(arch, input_size, num_classes).macs >= low.macs, "smallest() must have the fewest MACs"
