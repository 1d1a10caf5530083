from __future__ import annotations

import subprocess
import sys

import pytest

from studentnas import Arch, BadInputError, list_proxies, list_searchers, list_spaces
from studentnas.core.registry import Registry


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
