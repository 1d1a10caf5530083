"""What a Puzzle block costs: params, MACs, CPU latency and memory, per replacement and for whole students.

Per-block costs are what the MIP adds up (METHODS.md §3.5); they are measured on the block alone at
batch 1 with the parent's input shape:

* ``params``: parameter count;
* ``macs``: multiply-accumulates counted by ``torch.utils.flop_counter`` (its FLOPs / 2);
* ``latency_ms``: median CPU latency at batch 1 (fixed threads, warm-up first);
* ``memory_mb``: the block's weights and buffers (MB = 1e6 bytes), plus, for attention over a context, its
  KV cache at batch 1 (``2 * kv_heads * head_dim * context * 4`` bytes). Activations are not additive,
  so they are charged once, in the fixed part: the teacher's peak activation pair (no replacement ever
  enlarges a hidden state).

Sums of block latencies underestimate a whole network's latency; the pipeline therefore re-measures
the assembled student (:func:`student_costs`) and the MIP tightens its limit when the sum was too
optimistic (``studentnas.puzzle.mip.solve_with_recheck``).

Example:
    >>> from torch import nn
    >>> c = block_costs(nn.Linear(8, 8), (4, 8), latency=False)
    >>> c["params"], c["macs"], round(c["memory_mb"] * 1e6)
    (72.0, 256.0, 288)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from studentnas.core.console import Progress
from studentnas.hardware.counting import count_params, macs_on
from studentnas.hardware.latency import median_forward_ms
from studentnas.hardware.memory import peak_activation_bytes
from studentnas.puzzle.library import Entry, Library

if TYPE_CHECKING:
    from studentnas.puzzle.decompose import Decomposed, Family

MB = 1e6


def _example(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    return torch.zeros(1, *shape, dtype=dtype)


def weight_mb(module: nn.Module) -> float:
    """Bytes of parameters and buffers, in MB."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()]) / MB


def kv_cache_mb(module: nn.Module, context: int) -> float:
    """KV-cache MB at batch 1 over ``context`` tokens for every attention inside ``module`` that declares
    ``kv_heads`` and ``head_dim`` (no-op and linear replacements have none)."""
    total = 0
    for sub in module.modules():
        kv, dim = getattr(sub, "kv_heads", None), getattr(sub, "head_dim", None)
        if isinstance(kv, int) and isinstance(dim, int):
            total += 2 * kv * dim * context * 4
    return total / MB


def block_costs(module: nn.Module, in_shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32,
                context: int | None = None, latency: bool = True) -> dict[str, float]:
    """Costs of one block at batch 1 on input shape ``in_shape`` (no batch dim); see the module docstring."""
    x = _example(in_shape, dtype)
    out = {"params": float(count_params(module)), "macs": float(macs_on(module, x)),
           "memory_mb": weight_mb(module) + (kv_cache_mb(module, context) if context else 0.0)}
    if latency:
        out["latency_ms"] = median_forward_ms(module, x, repeats=15, warmup=3)
    return out


def peak_activation_mb(modules: list[nn.Module], x: torch.Tensor) -> float:
    """The largest input+output activation pair of any leaf module while running ``modules`` in a chain."""
    peak = 0
    for mod in modules:
        was = mod.training
        mod.eval()
        try:
            peak = max(peak, peak_activation_bytes(mod, x))
            with torch.inference_mode():
                x = mod(x)
        finally:
            mod.train(was)
    return peak / MB


def student_costs(model: nn.Module, input_shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32,
                  context: int | None = None, latency: bool = True) -> dict[str, float]:
    """Real costs of a whole network (teacher or assembled student) at batch 1: params, MACs, latency and
    memory (weights + KV cache + its own peak activation pair), in the same units as the block tables."""
    x = _example(input_shape, dtype)
    out = block_costs(model, input_shape, dtype=dtype, context=context, latency=latency)
    out["memory_mb"] += peak_activation_mb([model], x)
    return out


def fixed_costs(prefix: nn.Module, suffix: nn.Module, hidden_shape: tuple[int, ...], input_shape: tuple[int, ...],
                *, dtype: torch.dtype, peak_mb: float, latency: bool = True) -> dict[str, float]:
    """Costs of the parts every student keeps (prefix and suffix), plus the activation memory charge."""
    pre = block_costs(prefix, input_shape, dtype=dtype, latency=latency)
    suf = block_costs(suffix, hidden_shape, latency=latency)
    out = {k: pre[k] + suf[k] for k in pre}
    out["memory_mb"] += peak_mb
    return out


def summarize(costs: Mapping[str, float]) -> str:
    """``'1.23 M params, 45.6 MMACs, 0.8 ms, 5.1 MB'`` for logs."""
    parts = [f"{costs['params'] / 1e6:.3g} M params", f"{costs['macs'] / 1e6:.4g} MMACs"]
    if "latency_ms" in costs:
        parts.append(f"{costs['latency_ms']:.3g} ms")
    if "memory_mb" in costs:
        parts.append(f"{costs['memory_mb']:.3g} MB")
    return ", ".join(parts)


def costed_library(dec: Decomposed, family: Family, options: Mapping[str, Any], context: int | None, *,
                   latency: bool = True, quiet: bool = True) -> Library:
    """Every replacement ``family`` offers for ``dec`` with its block costs (no quality yet), and the fixed
    costs of the prefix and suffix. Without ``latency`` only params, MACs and memory are counted (fast)."""
    reps = family.replacements(dec, options)
    entries = []
    with Progress(total=len(reps), desc="library costs", quiet=quiet) as bar:
        for rep in reps:
            module = family.build(dec, rep)
            entries.append(Entry(rep, costs=block_costs(module, dec.infos[rep.start].in_shape, context=context,
                                                        latency=latency)))
            bar.update(1)
    peak = peak_activation_mb([dec.prefix, *dec.layers, dec.suffix], dec.example_input(1))
    fixed = fixed_costs(dec.prefix, dec.suffix, dec.infos[-1].out_shape, dec.input_shape, dtype=dec.input_dtype,
                        peak_mb=peak, latency=latency)
    return Library(family.name, list(dec.infos), entries, fixed,
                   {"unknown_layers": [i.name for i in dec.infos if i.kind == "unknown"]})
