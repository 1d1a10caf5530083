from __future__ import annotations

import json
import subprocess
import sys

import pytest

from studentnas import Arch, BadInputError, Cost, get_space, list_proxies, list_searchers, list_spaces
from studentnas.core.candidate import Candidate
from studentnas.core.registry import Registry
from studentnas.engine.rundir import Run, RunDir


def test_arch_id_is_stable_across_processes_and_gene_order() -> None:
    a = Arch("resnet", {"block": "basic", "depth1": 2, "width1": 0.5})
    b = Arch("resnet", {"width1": 0.5, "depth1": 2, "block": "basic"})
    assert a == b and hash(a) == hash(b) and a.id == b.id
    code = "from studentnas import Arch; print(Arch('resnet', {'block': 'basic', 'depth1': 2, 'width1': 0.5}).id)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == a.id
    assert Arch.from_dict(a.to_dict()) == a and a.replace(depth1=3) != a


def test_registry_suggests_close_names() -> None:
    reg = Registry("colour")
    reg.register("red")(type("Red", (), {}))
    reg.register("green")(type("Green", (), {}))
    with pytest.raises(BadInputError, match=r"unknown colour 'gren'\. Did you mean 'green'\? Known: green, red"):
        reg.get("gren")
    assert reg.list("g*") == ["green"]


def test_builtin_plugins_are_registered() -> None:
    assert {"resnet", "nb201"} <= set(list_spaces())
    assert {"params", "macs", "synflow", "nwot"} <= set(list_proxies())
    assert {"random", "evolution"} <= set(list_searchers())


def test_user_plugins_load_from_the_environment(tmp_path) -> None:
    plugin = tmp_path / "my_proxy.py"
    plugin.write_text("from studentnas.core.registry import PROXIES\n@PROXIES.register('mine')\nclass Mine: pass\n")
    code = "import studentnas as sn; print('mine' in sn.list_proxies())"
    env = {"STUDENTNAS_PLUGINS": str(plugin), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "True", out.stderr


def test_str_is_generic_and_labels_come_from_the_space(tmp_path) -> None:
    """A value type does not reach into the plugin registry: ``str(arch)`` is ``space(genes)``, and the
    space's own label (the NB201 cell string) is what pareto.json, the table and the dataframe show."""
    arch = Arch("nb201", {f"e{i}": "none" for i in range(6)})
    cell = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert str(arch) == "nb201(e0=none,e1=none,e2=none,e3=none,e4=none,e5=none)"
    space = get_space("nb201")
    assert space.format_arch(arch) == cell
    run_dir = RunDir(tmp_path / "run")
    run_dir.create({"space": space.config(), "proxies": ["nwot"]})
    cand = Candidate(arch, Cost(1e6, 1e3), {"nwot": 1.0})
    run_dir.append(cand)
    run_dir.write_pareto([cand], "nwot", None, space)
    run = Run(run_dir.path)
    assert run.space.config() == space.config()
    assert json.loads((run.path / "pareto.json").read_text())["front"][0]["label"] == cell
    assert list(run.to_dataframe()["label"]) == [cell]

