"""Render evaluation results as a terminal table and as ``report.md`` (``metrics.json``: ``rundir.write_json``)."""

from __future__ import annotations

import json
from typing import Any


def metrics_table(results: dict[str, dict[str, float]], digits: int = 4) -> str:
    """A fixed-width text table: one row per system, one column per metric."""
    if not results:
        return "(no results)"
    metrics = list(next(iter(results.values())))
    width = max(len("system"), *(len(n) for n in results))
    lines = ["  ".join([f"{'system':<{width}}", *(f"{m:>10}" for m in metrics)])]
    lines.append("-" * len(lines[0]))
    for name, scores in results.items():
        lines.append("  ".join([f"{name:<{width}}", *(f"{scores[m]:>10.{digits}f}" for m in metrics)]))
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, float]], digits: int = 4) -> str:
    metrics = list(next(iter(results.values())))
    lines = ["| system | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, scores in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[m]:.{digits}f}" for m in metrics) + " |")
    return "\n".join(lines)


def significance_markdown(comparison: dict[str, Any], max_p: float = 0.05) -> str:
    """p-values of ranx's paired test for every pair of systems, with win/tie/loss counts."""
    names, metrics = comparison["model_names"], comparison["metrics"]
    lines = [
        f"Paired {comparison['stat_test']} test; * marks p < {max_p}. W/T/L: per-query wins, ties, losses of the row system.",
        "",
        "| system | vs | " + " | ".join(f"{m} p (W/T/L)" for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            cells = []
            for m in metrics:
                raw = comparison[a]["comparisons"][b][m]
                p = float("nan") if raw is None else float(raw)  # identical runs: NaN, stored as null
                wtl = comparison[a]["win_tie_loss"][b][m]
                cells.append(f"{p:.4g}{'*' if p < max_p else ''} ({wtl['W']}/{wtl['T']}/{wtl['L']})")
            lines.append(f"| {a} | {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


EXACT_SUFFIX = " (exact)"
COST_METRICS = ("ndcg@10", "recall@100")


def approximation_cost(results: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """For each system evaluated both ways (``NAME`` and ``NAME (exact)``): exact, ANN and their difference."""
    cost = {}
    for name, exact in results.items():
        if not name.endswith(EXACT_SUFFIX) or name[: -len(EXACT_SUFFIX)] not in results:
            continue
        ann = results[name[: -len(EXACT_SUFFIX)]]
        row = {}
        for metric in COST_METRICS:
            if metric in exact and metric in ann:
                row |= {f"{metric} exact": exact[metric], f"{metric} ANN": ann[metric],
                        f"{metric} change": ann[metric] - exact[metric]}
        cost[name[: -len(EXACT_SUFFIX)]] = row
    return cost


def eval_report(
    title: str,
    results: dict[str, dict[str, float]],
    comparison: dict[str, Any] | None,
    settings: dict[str, Any],
) -> str:
    parts = [f"# {title}", "", "## Metrics", "", markdown_table(results), ""]
    cost = approximation_cost(results)
    if cost:
        parts += ["## What the approximate index costs", "",
                  "Each model searched through its approximate index as deployed and exactly over the same vectors.", "",
                  markdown_table(cost), ""]
    if comparison and len(comparison.get("model_names", [])) > 1:
        parts += ["## Significance", "", significance_markdown(comparison), ""]
    parts += ["## Settings", "", "```json", json.dumps(settings, indent=2, default=str), "```", ""]
    return "\n".join(parts)
