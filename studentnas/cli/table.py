"""Plain-text tables of candidates for the terminal.

Example:
    >>> from studentnas import get_space
    >>> from studentnas.core.arch import Arch
    >>> from studentnas.core.cost import Cost
    >>> from studentnas.core.candidate import Candidate
    >>> c = Candidate(Arch("nb201", {f"e{i}": "none" for i in range(6)}), Cost(4.1e9, 25.6e6), {"nwot": 500.0})
    >>> header, row = front_table([c], ["nwot"], get_space("nb201")).splitlines()
    >>> header.split(), row.split()[-1]
    (['rank', 'id', 'GMACs', 'Mparams', 'nwot', 'arch'], '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|')
"""

from __future__ import annotations

from collections.abc import Sequence

from studentnas.core.candidate import Candidate
from studentnas.core.space import SearchSpace


def front_table(front: Sequence[Candidate], proxies: Sequence[str], space: SearchSpace, top: int | None = None) -> str:
    """Rank, id, GMACs (papers' GFLOPs), M params, every score and the arch (``space``'s label), one row per
    candidate."""
    rows = [["rank", "id", "GMACs", "Mparams", *proxies, "arch"]]
    for i, c in enumerate(front[:top] if top else front):
        rows.append([str(i + 1), c.id, f"{c.cost.gmacs:.3f}", f"{c.cost.mparams:.2f}",
                     *[f"{c.scores.get(p, float('nan')):.4g}" for p in proxies], space.format_arch(c.arch)])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows)
