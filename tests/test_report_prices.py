"""The report's list of price rows, with their dates and the stale flag."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from allocation.report import STALE_PRICE_DAYS, _price_rows_section
from allocation.results import SweepSummary
from allocation.study import load_study
from tests.conftest import CATALOGS


@pytest.fixture(scope="module")
def summary() -> SweepSummary:
    study = load_study(
        CATALOGS / "workflows" / "object-detection.yaml",
        CATALOGS / "systems" / "edge-cloud.yaml",
        CATALOGS,
    )
    return SweepSummary(
        workflow=study.workflow,
        system=study.system,
        problem=study.problem,
        candidates=pd.DataFrame(),
        patterns=pd.DataFrame(),
        patterns_sampled=False,
        baselines=pd.DataFrame(),
        space_size=study.problem.space_size,
    )


def test_price_rows_listed_with_dates(summary: SweepSummary) -> None:
    text = _price_rows_section(summary, today=dt.date(2026, 9, 6))
    assert "ap-northeast-1" in text
    assert "2026-09-05" in text
    assert "0.114" in text
    assert "second-hand" in text


def test_recent_prices_not_stale(summary: SweepSummary) -> None:
    text = _price_rows_section(summary, today=dt.date(2026, 9, 6))
    # The ingress row of the shipped table is undated, so it is flagged whatever the day.
    assert "(stale)" not in text.replace("unknown (stale)", "")


def test_old_prices_flagged_stale(summary: SweepSummary) -> None:
    later = dt.date(2026, 9, 5) + dt.timedelta(days=STALE_PRICE_DAYS + 1)
    text = _price_rows_section(summary, today=later)
    assert "2026-09-05 (stale)" in text
    assert f"older than {STALE_PRICE_DAYS} days" in text
