"""``zc_ensemble``: the fitted rank combination shipped as a proxy (weighted mean percentile of members)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import studentnas
from studentnas import get_proxy
from studentnas.bench import correlation as corr
from studentnas.core.errors import BadInputError
from studentnas.proxies.ensemble import Calibration, ZeroCostEnsembleProxy

SHIPPED = Path(studentnas.__file__).parent / "assets" / "zc_ensemble_nb201.json"


def test_percentile_by_hand() -> None:
    cal = Calibration(weights={"params": 1.0}, reference={"params": [4.0, 1.0, 3.0, 2.0, 2.0]})
    assert cal.reference["params"] == [1.0, 2.0, 2.0, 3.0, 4.0]  # sorted on load
    # ranks of 1, 2, 2, 3, 4 (1-based, ties averaged): 1, 2.5, 2.5, 4, 5; percentile = rank / 5
    assert cal.percentile("params", 2.0) == pytest.approx(2.5 / 5)
    assert cal.percentile("params", 4.0) == pytest.approx(5 / 5)
    assert cal.percentile("params", 1.0) == pytest.approx(1 / 5)
    assert cal.percentile("params", 2.5) == pytest.approx((3 + 0.5) / 5)  # between 2 (rank 3 slots below) and 3
    assert cal.percentile("params", 7.0) == pytest.approx(1 + 1e-3 * 3 / 3)  # beyond the range: tiny slope
    assert cal.percentile("params", 0.0) == pytest.approx((0.5 - 1e-3 * 1 / 3) / 5)
    # on the reference values themselves the percentiles are combine_ranks' normalised ranks
    ref = np.array([4.0, 1.0, 3.0, 2.0, 2.0])
    assert [cal.percentile("params", v) for v in ref] == pytest.approx(corr.combine_ranks({"p": ref}).tolist())


def test_score_is_the_weighted_mean_of_member_percentiles() -> None:
    proxy = get_proxy("zc_ensemble")
    (better, ctx_b), (worse, ctx_w) = ZeroCostEnsembleProxy.example_pair()
    for net, ctx in ((better, ctx_b), (worse, ctx_w)):
        members = proxy.member_scores(net, ctx)
        cal = proxy.calibration
        expected = sum(w * cal.percentile(m, members[m]) for m, w in cal.weights.items()) / sum(cal.weights.values())
        assert proxy.score(net, ctx) == pytest.approx(expected, rel=1e-12)
        for name, value in members.items():  # each member alone gives the same value through the ensemble
            assert value == pytest.approx(get_proxy(name).score(net, ctx), rel=1e-6)
    assert proxy.score(better, ctx_b) > proxy.score(worse, ctx_w)


def test_shipped_calibration_comes_from_tune_cells_only() -> None:
    data = json.loads(SHIPPED.read_text())
    assert data["source"]["split"] == "tune" and data["source"]["dataset"] == "cifar10"
    assert data["weights"] == {"meco": 1.0, "nwot": 1.0, "synflow": 0.25}
    for member, values in data["reference"].items():
        assert 500 <= len(values) <= data["source"]["n_tune"] and np.all(np.diff(values) >= 0), member


def test_bad_calibrations_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="unknown proxy 'nwto'"):
        Calibration(weights={"nwto": 1.0}, reference={"nwto": [1.0, 2.0]})
    with pytest.raises(BadInputError, match="missing: \\['meco'\\]"):
        Calibration(weights={"meco": 1.0}, reference={})
    broken = tmp_path / "c.json"
    broken.write_text("{not json")
    with pytest.raises(BadInputError, match="unreadable"):
        get_proxy("zc_ensemble", calibration=broken)
