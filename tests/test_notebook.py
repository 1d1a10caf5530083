"""notebooks/pareto_analysis.ipynb runs end to end (nbclient + ipykernel on this venv's python) on
tiny real runs, and is committed without outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import studentnas as sn

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "pareto_analysis.ipynb"
KERNEL = "studentnas-test-python"


def test_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", []) and "RUN_DIRS" in code[0].source


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_notebook_executes_on_two_tiny_runs(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = ["--teacher", "resnet18", "--space", "nb201", "--image-size", "32", "--budget", "60MMACs",
            "--candidates", "6", "--batch-size", "8", "--quiet"]
    done = cli("search", *tiny, "--out", str(tmp_path / "evo"))
    assert done.returncode == 0, done.stderr
    sn.search(teacher="resnet18", space="nb201", image_size=32, budget="60MMACs", candidates=6, batch_size=8,
              searcher="random", seed=1, out=tmp_path / "rand", quiet=True)
    # A kernel spec that runs this interpreter, whatever kernels the machine has installed.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "studentnas test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("STUDENTNAS_RUNS", os.pathsep.join([str(tmp_path / "evo"), str(tmp_path / "rand")]))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend turns figures into PNG outputs

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()

    text = outputs_text(nb)
    assert f"python {sys.executable}," in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the fronts and the stage breakdown
    runs = {name: sn.load_run(tmp_path / name) for name in ("evo", "rand")}
    hv = next(c for c in nb.cells if "hypervolumes = pd.DataFrame" in c.source).outputs[0]["data"]["text/plain"]
    assert "evo" in hv and "rand" in hv and "hypervolume (pymoo)" in hv
    best = runs["evo"].pareto[0]
    assert f"student {best.id}: {runs['evo'].space.format_arch(best.arch)}" in text
    assert all(stage in text for stage in ("stem", "stages.0", "stages.1", "stages.2", "head"))
