"""The teacher's hidden states at every layer boundary, cached on disk so memory stays bounded.

``h{i}.npy`` holds the hidden state entering parent layer ``i`` for every sample of a set
(``h{L}.npy`` is the last layer's output), ``logits.npy`` the teacher's output. Files are written
batch by batch into ``numpy`` memmaps under a temporary name and renamed when complete, and
``done.json`` records what was cached (teacher, samples, shapes); a rerun with the same identity
reuses them, anything else rebuilds them. BLD workers and scoring read slices with
:meth:`ActivationStore.batch` without loading a whole file.

Storage is float16 by default (half the disk; BLD targets are normalised, so its 3 significant
digits are enough); ``dtype='float32'`` keeps full precision.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from studentnas.puzzle.decompose import Decomposed
    >>> dec = Decomposed("toy", nn.Identity(), nn.ModuleList([nn.Linear(4, 4)]), nn.Identity(), [], (4,))
    >>> store = ActivationStore(tempfile.mkdtemp(), "bld")
    >>> store.record(dec, torch.ones(10, 4), {"teacher": "toy"}, batch_size=4, quiet=True)
    >>> store.shape(1), store.batch(0, slice(0, 2)).shape
    ((10, 4), torch.Size([2, 4]))
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studentnas.core.console import Progress
from studentnas.puzzle.decompose import Decomposed
from studentnas.runfiles.atomic import write_json_atomic


class ActivationStore:
    """Hidden states of one sample set (``bld``, ``score``, ...) under ``root/acts/<name>/``."""

    def __init__(self, root: str | Path, name: str):
        self.dir = Path(root) / "acts" / name
        self.name = name

    def _done(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "done.json").read_text())
        except (OSError, ValueError):
            return None

    def ready(self, identity: dict[str, Any]) -> bool:
        """True when the cache is complete and was made for ``identity``."""
        done = self._done()
        return done is not None and done.get("identity") == json.loads(json.dumps(identity))

    @property
    def num_layers(self) -> int:
        done = self._done()
        if done is None:
            raise FileNotFoundError(f"no complete activation cache in {self.dir}")
        return int(done["layers"])

    def record(self, dec: Decomposed, inputs: torch.Tensor, identity: dict[str, Any], *, batch_size: int = 64,
               dtype: str = "float16", quiet: bool = False) -> None:
        """Run the teacher over ``inputs`` and write every boundary's hidden state and the logits."""
        if self.ready(identity):
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        n, num_layers = len(inputs), len(dec.layers)
        maps: dict[str, np.memmap] = {}

        def sink(key: str, value: torch.Tensor, start: int) -> None:
            if key not in maps:
                store = np.float32 if key == "logits" else np.dtype(dtype)
                maps[key] = np.lib.format.open_memmap(self.dir / f"{key}.npy.tmp", mode="w+", dtype=store,
                                                      shape=(n, *value.shape[1:]))
            maps[key][start : start + len(value)] = value.detach().float().numpy()

        with Progress(total=n, desc=f"teacher activations ({self.name})", quiet=quiet) as bar, torch.no_grad():
            for start in range(0, n, batch_size):
                hidden = dec.prefix(inputs[start : start + batch_size])
                for i, layer in enumerate(dec.layers):
                    sink(f"h{i}", hidden, start)
                    hidden = layer(hidden)
                sink(f"h{num_layers}", hidden, start)
                sink("logits", dec.suffix(hidden), start)
                bar.update(min(batch_size, n - start))
        for key, array in maps.items():
            array.flush()
            del array
            os.replace(self.dir / f"{key}.npy.tmp", self.dir / f"{key}.npy")
        write_json_atomic(self.dir / "done.json", {"identity": identity, "samples": n, "layers": num_layers,
                                                   "dtype": dtype})

    def array(self, key: int | str) -> np.ndarray:
        """The memmap of ``h{key}`` (an int) or ``'logits'``."""
        name = f"h{key}" if isinstance(key, int) else key
        return np.load(self.dir / f"{name}.npy", mmap_mode="r")

    def shape(self, key: int | str) -> tuple[int, ...]:
        return tuple(self.array(key).shape)

    def batch(self, key: int | str, index: slice | np.ndarray) -> torch.Tensor:
        """Rows ``index`` of ``h{key}``/``logits`` as a float32 tensor."""
        return torch.from_numpy(np.array(self.array(key)[index], dtype=np.float32))
