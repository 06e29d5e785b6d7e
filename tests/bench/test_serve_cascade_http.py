"""bench/serve.py --cascade: what it accepts and the settings its API processes get."""

import orjson
import pytest

from api.cascadespec import CascadeSpec
from bench.serve_cascade_http import CASCADE, CascadeRun


def test_the_top_rule_and_the_uncertainty_rule() -> None:
    top = CascadeRun.parse("fm:50")
    assert top.spec == CascadeSpec(first="main", then="fm", top=50)
    assert top.label == "fm top 50"
    near = CascadeRun.parse("fm:10:10")
    assert near.spec == CascadeSpec(first="main", then="fm", top=10, uncertain=10)
    assert near.label == "fm 10 near 10"


def test_each_process_gets_the_setting_serve_reads() -> None:
    apps = CascadeRun.parse("fm:10:10").apps()
    assert orjson.loads(apps[CASCADE]["HEADRACE_CASCADE"]) == {
        "first": "main",
        "then": "fm",
        "top": 10,
        "uncertain": 10,
    }
    assert orjson.loads(apps["fm"]["HEADRACE_TRAFFIC"]) == {"fm": 1}
    # The top rule names no `uncertain`, as a user would write it.
    top = orjson.loads(CascadeRun.parse("fm:50").apps()[CASCADE]["HEADRACE_CASCADE"])
    assert "uncertain" not in top


@pytest.mark.parametrize("text", ["fm", "fm:", "fm:x", ":5", "fm:5:5:5", "fm:0", "fm:10:30"])
def test_what_serve_would_refuse_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        CascadeRun.parse(text)
