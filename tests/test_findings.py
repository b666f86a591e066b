"""Findings: paired differences, the verdict rule and its sentences; the papers' registry; the claims check."""
import math

import numpy as np
import pandas as pd
import pytest

from ltlib.report import claims as C
from ltlib.report import findings as F
from ltlib.core.errors import ConfigError
from ltlib.report.papers import REPORTED, reference_column, reported, sources


def test_t_critical_matches_closed_forms():
    """df = 1 is Cauchy: tan(pi (p - 1/2)); df = 2 has t = (2p - 1) / sqrt(2 p (1 - p)); large df tends to the
    normal 1.95996. A wrong density or a one-sided level fails these."""
    p = 0.975
    assert F.t_critical(1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-5)
    assert F.t_critical(2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-5)
    assert F.t_critical(2000) == pytest.approx(1.95996, abs=2e-3)
    assert F.t_critical(1, level=0.5) == pytest.approx(1.0, rel=1e-5)     # Cauchy's quartile
    with pytest.raises(ValueError, match="df >= 1"):
        F.t_critical(0)


def _runs(values):
    return [{"seed": s, "overall": v, "many": v, "medium": v, "few": v} for s, v in values.items()]


def test_one_seed_gives_no_verdict():
    f = F.compare("A", _runs({0: 60.0}), "B", _runs({0: 65.0}), "few")
    assert f.n == 1 and f.interval is None and f.beyond_noise is None and not f.resolved
    assert f.verdict == "one seed: no verdict"
    text = f.sentence()
    assert "+5.0 points on one seed (seed 0)" in text and "no verdict" in text
    assert "every seed" not in text and "consistent" not in text


def test_several_seeds_count_signs_and_use_the_t_interval():
    # differences +2, +3, +4: mean 3, sd 1, half width t(2) / sqrt(3)
    f = F.compare("A", _runs({0: 50, 1: 50, 2: 50}), "B", _runs({0: 52, 1: 53, 2: 54}))
    half = F.t_critical(2) / math.sqrt(3)
    assert f.interval == pytest.approx((3 - half, 3 + half))
    assert f.consistency == "higher in every seed" and f.beyond_noise and f.resolved
    assert "higher in every seed, beyond the seed noise" in f.sentence()
    assert "+2.0 / +3.0 / +4.0 (seeds 0 / 1 / 2)" in f.sentence()


def test_same_sign_but_wide_interval_is_within_the_noise():
    f = F.compare("A", _runs({0: 50, 1: 50, 2: 50}), "B", _runs({0: 50.5, 1: 60, 2: 51}))
    assert f.consistency == "higher in every seed" and not f.beyond_noise and not f.resolved
    assert f.verdict == "higher in every seed, within the seed noise"


def test_mixed_signs_are_counted():
    f = F.compare("A", _runs({0: 50, 1: 50, 2: 50}), "B", _runs({0: 49, 1: 53, 2: 54}))
    assert f.higher == 2 and f.lower == 1 and f.consistency == "higher in 2 of 3 seeds, lower in 1"
    assert not f.resolved
    tiny = F.compare("A", _runs({0: 50, 1: 50, 2: 50}), "B", _runs({0: 50.04, 1: 51, 2: 52}))
    assert tiny.consistency == "higher in 2 of 3 seeds, equal in 1" and not tiny.resolved   # +0.04 prints as +0.0
    level = F.compare("A", _runs({0: 50, 1: 50}), "B", _runs({0: 50, 1: 50}))
    assert level.consistency == "equal in every seed" and not level.resolved


def test_pairs_only_shared_seeds_and_refuses_none():
    f = F.compare("A", _runs({0: 50, 1: 51, 2: 52}), "B", _runs({1: 55, 2: 50, 5: 0}))
    assert f.seeds == (1, 2) and list(f.differences) == [4, -2]
    with pytest.raises(ValueError, match="no seed in common"):
        F.compare("A", _runs({0: 1}), "B", _runs({1: 1}))
    with pytest.raises(KeyError, match="no metric"):
        F.compare("A", _runs({0: 1}), "B", _runs({0: 1}), "ece")


def test_values_of_any_unit_and_the_table():
    f = F.from_values("CE", {0: 0.2, 1: 0.3}, "LDAM", {0: 0.1, 1: 0.5}, "Δloss", unit="")
    assert f.values_text() == "−0.100 / +0.200 (seeds 0 / 1)"
    table = F.findings_table([f])
    assert list(table.columns[:4]) == ["b", "a", "metric", "seeds"] and table.loc[0, "verdict"] == f.verdict
    assert F.count_text(16, 16, "models") == "all 16 models" and F.count_text(0, 4, "models") == "none of the 4 models"
    assert F.count_text(9, 16, "models") == "9 of 16 models"
    assert F.signed(-1.25) == "−1.2" and F.signed(0.5) == "+0.5"


def test_best_and_compare_all():
    runs = {"CE": _runs({0: 50, 1: 52}), "BS": _runs({0: 55, 1: 56}), "LDAM": _runs({0: 40, 1: 60})}
    from ltlib.report.results import summarize
    assert F.best(summarize(runs))[0] == "BS"
    found = F.compare_all(runs, "CE", ("overall",))
    assert [(f.a, f.b) for f in found] == [("CE", "BS"), ("CE", "LDAM")]
    with pytest.raises(KeyError, match="no runs labelled"):
        F.compare_all(runs, "SGD")


def test_reported_numbers_carry_their_source():
    wd = reported("wb/stage1-wd")
    assert wd.value == 47.9 and wd.source and wd.setting and wd.link.startswith("https://github.com/")
    assert reported("wb/stage1-wd:few").value == 13.9 and reported("wb/stage1-wd:few").metric == "few"
    assert all(r.link.startswith("https://") for r in REPORTED.values())
    with pytest.raises(ConfigError, match="Known:"):
        reported("nope")
    assert reference_column({"a": "cmo/ce"}, ["a", "b"]) == ["38.6", ""]
    assert "arxiv.org/abs/2112.00412" in sources(["cmo/ce", "cmo/ce-cmo"])


def _table(rows):
    return pd.DataFrame([{"notebook": "05", "table": "runs", "label": label, "seed": seed, "metric": "overall",
                          "value": value, "commit": "x", "threads": 1, "hardware": "cpu", "date": "d"}
                         for label, seed, value in rows])


@pytest.mark.parametrize("values,expected", [
    ({0: (70, 75)}, "one seed: no verdict"),
    ({0: (70, 75), 1: (71, 76), 2: (69, 75)}, "reproduces"),
    ({0: (75, 70), 1: (76, 71), 2: (75, 69)}, "reversed"),
    ({0: (70, 75), 1: (71, 70), 2: (69, 75)}, "not resolved"),
])
def test_claim_verdicts_follow_the_rule(values, expected):
    claim = C.Claim("CMO lifts CE", "05", "runs", "CE", "CE + CMO", reported=("cmo/ce", "cmo/ce-cmo"))
    table = _table([(label, s, v) for s, pair in values.items() for label, v in zip(("CE", "CE + CMO"), pair)])
    assert C.check(claim, table)["verdict"] == expected
    assert C.check(claim, None)["verdict"] == "not run"
    assert C.check(claim, _table([("CE", 0, 1.0)]))["verdict"] == "not run"
    assert claim.paper() == "38.6 → 43.9 (CMO paper, Table 2 (as quoted in the repository's issues))"


def test_every_claim_names_reported_numbers_that_exist():
    for claim in C.CLAIMS:
        if claim.reported:
            claim.paper()
    table = C.claims_table({}, {})
    assert len(table) == len(C.CLAIMS) and set(table["your verdict"]) == {"not run"}
