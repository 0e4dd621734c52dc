"""Render the benchmark record, docs/benchmarks.md, from one run's tables."""

from __future__ import annotations

import datetime
from typing import Any

from bench.common import Settings, Table, format_rate, format_seconds


def render_page(
    results: dict[str, list[Table]],
    *,
    command: str,
    machine: dict[str, str],
    versions: dict[str, str],
    settings: Settings,
    total_s: float,
) -> str:
    """Return the markdown page: setup, the choices with their figures, then every table."""
    lines = [
        "# Benchmarks",
        "",
        "Every figure on this page comes from one run of the command below, which wrote "
        "the page. Times are medians of the repeats; ratios compare figures measured in "
        "the same run. Other processes on the machine were not stopped, so single "
        "figures vary from run to run by a few tens of percent.",
        "",
        "```",
        command,
        "```",
        "",
        f"Run on {datetime.date.today().isoformat()}, {total_s:.0f} s in all, "
        f"{'quick sizes' if settings.quick else 'full sizes'}, "
        f"{settings.repeats} repeat(s), baselines skipped beyond an extrapolated "
        f"{settings.time_limit_s:.0f} s.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine.items()),
        "",
        "| package | version |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in versions.items()),
        "",
    ]
    lines += _choices(results)
    for name, tables in results.items():
        for table in tables:
            lines += _table(table, name)
    return "\n".join(lines).rstrip() + "\n"


def _facts(results: dict[str, list[Table]], module: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for table in results.get(module, []):
        facts.update(table.facts)
    return facts


def _choices(results: dict[str, list[Table]]) -> list[str]:
    lines = ["## What was chosen and why", ""]
    pareto = _facts(results, "bench_pareto")
    if pareto:
        largest = max(int(key.rsplit(" ", 1)[1]) for key in pareto if key.startswith("allocation"))
        ratios = [
            f"{key.removeprefix('moocore ratio ').rsplit(' ', 1)[0]}: {value:.2f}"
            for key, value in pareto.items()
            if key.startswith("moocore ratio") and key.endswith(f" {largest}")
        ]
        lines += [
            "**Pareto filter.** `allocation.pareto.pareto_front` first drops, in linear "
            "time, rows that another row dominates without the tolerance as well: with two "
            "objectives by bins of the first objective, with three by a grid over the first "
            "two. Such a row dominates everything the dropped row dominates, so the exact "
            "front is unchanged. The exact filter then sorts the rest by the first objective "
            "(a radix sort of the float bit patterns) and sweeps with prefix minima (two "
            "objectives) or a Fenwick tree of minima (three). Equivalent points are merged "
            "by a union-find over the tolerance band.",
            "",
            f"At {largest:,} points, moocore's time over allocation's time, per data shape "
            "and dimension: " + "; ".join(ratios) + ".",
            "",
        ]
        if pareto.get("disagreement"):
            lines += ["**Some libraries returned a different front; see the tables.**", ""]
    prefilter = _facts(results, "bench_prefilter")
    if prefilter:
        lines += [
            "**numba or NumPy.** The prefilter takes "
            f"{format_seconds(prefilter['numba warm'])} warm with numba against "
            f"{format_seconds(prefilter['numpy warm'])} with NumPy (`ufunc.at` for the bin "
            "minima). numba's first call in a new process costs "
            f"{format_seconds(prefilter['numba cold'])} with an empty cache (compilation) "
            f"and {format_seconds(prefilter['numba cached'])} once the cache is filled; the "
            "whole `pareto_front` compiles in "
            f"{format_seconds(prefilter['pareto_front cold'])} the first time and then "
            f"loads in {format_seconds(prefilter['pareto_front cached'])}. The kernels use "
            "numba with `cache=True`, so only the first process after an install pays for "
            "compilation.",
            "",
        ]
    engine = _facts(results, "bench_engine")
    if engine:
        lines += [
            "**Engine.** The engine (`allocation.sweep.sweep_in_process`) estimates "
            f"{format_rate(engine['engine rate'])} "
            "assignments per second on the 4-device chain and "
            f"{format_rate(engine['gateway rate'])} on the 3^11 example; a plain Python "
            f"loop manages {format_rate(engine['loop rate'])}, and the published study "
            f"of this method about {format_rate(3**11 / 18000)}.",
            "",
        ]
    features = _facts(results, "bench_features")
    if features:
        lines += [_features_paragraph(features), ""]
    flow = _facts(results, "bench_flow")
    if flow:
        difference_s = flow["sweep"] - flow["floor"]
        compared = (
            f"costs {format_seconds(difference_s)} more than"
            if difference_s >= 0
            else f"ends {format_seconds(-difference_s)} sooner than"
        )
        lines += [
            f"**Whole run.** `allocation sweep` on the 3^11 example, with all its outputs, "
            f"takes {format_seconds(flow['sweep'])}; a one-task Prefect flow takes "
            f"{format_seconds(flow['floor'])}, so the sweep {compared} Prefect's floor. "
            "The sweep starts Prefect's temporary server first and loads its own modules "
            "and compiled code while the server boots; the one-task flow started the same "
            f"way takes {format_seconds(flow['early'])}. The sweep's own work inside its "
            f"flow run is {format_seconds(flow['in_flow'])}. In a real flow run on this "
            f"machine, a 4^13 chain is estimated at {format_rate(flow['rate'])} "
            "assignments per second.",
            "",
        ]
    return lines


def _features_paragraph(facts: dict[str, Any]) -> str:
    """Describe the cost of each opt-in feature, from `bench_features`' facts."""

    def takes(key: str) -> str:
        if f"{key} ratio" not in facts:
            return "was skipped (too slow)"
        return f"takes {facts[f'{key} ratio']:.3g} times as long ({facts[f'{key} path']} path)"

    text = (
        f"**Opt-in features.** Each figure compares a sweep of the {facts['chain stages']}-"
        f"stage chain with the same sweep without features ({facts['a path']} path). With "
        f"memory limits that bind, the sweep {takes('b')}. With period_s as an objective, "
        f"it {takes('c')}. With two concurrent frames, which compilation folds into the "
        f"time arrays, it {takes('d')}. With min_throughput_fps alone, it {takes('e')}. On a "
        f"DAG with parallel branches, a sweep with contention {takes('g')}."
    )
    if "i s per sample" in facts:
        text += (
            " A Monte Carlo sample of the 3^11 example takes "
            f"{format_seconds(facts['i s per sample'])} "
            f"({facts['i samples per minute']:,.0f} samples per minute), "
            f"{facts['i ratio']:.3g} times one front of its nominal inputs."
        )
    return text


def _table(table: Table, module: str) -> list[str]:
    lines = [
        f"## {table.title}",
        "",
        f"From `bench/{module}.py`.",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    for row in table.rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    lines.append("")
    for note in table.notes:
        lines += [note, ""]
    return lines
