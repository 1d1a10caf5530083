"""Budget grammar: every documented form parses to the right absolute number."""

from __future__ import annotations

import math

import pytest

from studentnas import BadInputError, Budget, Cost


@pytest.mark.parametrize(
    ("text", "metric", "limit"),
    [
        ("5GFLOPs", "macs", 5e9),
        ("5 GFLOPs", "macs", 5e9),
        ("5e9FLOPs", "macs", 5e9),
        ("5GMACs", "macs", 5e9),
        ("800MMACs", "macs", 800e6),
        ("0.5 gflops", "macs", 5e8),
        ("25Mparams", "params", 25e6),
        ("1.5K params", "params", 1500.0),
        ("30ms", "latency", 30.0),
        ("200MB", "memory", 200.0),
        ("1GB", "memory", 1000.0),
        ("1MiB", "memory", 1.048576),
    ],
)
def test_absolute_forms(text: str, metric: str, limit: float) -> None:
    [c] = Budget.parse(text).constraints
    assert c.metric == metric and math.isclose(c.limit, limit, rel_tol=1e-12)


def test_relative_form_resolves_against_the_teacher() -> None:
    budget = Budget.parse("60%params")
    assert budget.constraints[0].is_relative
    resolved = budget.resolve(Cost(macs=7.8e9, params=44.5e6))
    assert math.isclose(resolved.constraints[0].limit, 0.6 * 44.5e6)


def test_several_constraints_must_all_hold() -> None:
    b = Budget.parse(["5GFLOPs", "25Mparams"])
    assert b.satisfied(Cost(macs=5e9, params=25e6))  # limits are inclusive
    assert not b.satisfied(Cost(macs=5.000001e9, params=1e6))
    assert not b.satisfied(Cost(macs=1e9, params=25.1e6))
    # slack is the tightest relative headroom: min((5-4)/5, (25-20)/25) = 0.2
    assert math.isclose(b.slack(Cost(macs=4e9, params=20e6)), 0.2)
    assert b.violations(Cost(macs=6e9, params=1e6)) == ["macs <= 5 GMACs (has 6e+09)"]


@pytest.mark.parametrize(("text", "needle"), [("5 bananas", "unknown unit 'bananas'"), ("GFLOPs", "no number"),
                                              ("0GFLOPs", "positive"), ("5%bananas", "unknown share unit"),
                                              ("5", "unknown unit '(none)'")])
def test_errors_name_the_token_and_show_the_grammar(text: str, needle: str) -> None:
    with pytest.raises(BadInputError) as info:
        Budget.parse(text)
    assert needle in str(info.value) and "accepted forms" in str(info.value) and "60%params" in str(info.value)


def test_latency_budget_needs_a_measured_cost() -> None:
    b = Budget.parse("30ms")
    assert b.needs_measurement == {"latency"}
    assert b.satisfied(Cost(1, 1, latency_ms=29.9)) and not b.satisfied(Cost(1, 1, latency_ms=30.1))
    with pytest.raises(ValueError, match="needs latency"):
        b.satisfied(Cost(1, 1))
