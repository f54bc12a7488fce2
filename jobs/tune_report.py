"""The main job's report: before vs after, with significance, per-query movers and figures.

``report.md`` links its figures (``report_files/*.png``); ``report.html`` is the
same content with the figures embedded, so the one file can be mailed or archived.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from index.atomic import write_text
from retrieval.report import markdown_table, significance_markdown

HEADLINE = ["ndcg@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@100", "mrr@10", "map@100"]


def wins_losses(per_query: dict[str, Any], a: str = "tuned", b: str = "base", eps: float = 1e-9) -> dict[str, int]:
    sa, sb = per_query["systems"][a], per_query["systems"][b]
    diffs = [sa[q] - sb[q] for q in sb if q in sa]
    return {"wins": sum(d > eps for d in diffs), "losses": sum(d < -eps for d in diffs),
            "ties": sum(abs(d) <= eps for d in diffs)}


def movers(per_query: dict[str, Any], queries: dict[str, str], n: int = 8) -> list[dict[str, Any]]:
    """The queries whose nDCG@10 changed most, up and down, with first-relevant ranks before -> after."""
    base, tuned = per_query["systems"]["base"], per_query["systems"]["tuned"]
    ranks = per_query.get("first_relevant_rank", {})
    rows = [{"qid": q, "query": queries.get(q, ""), "base": base[q], "tuned": tuned[q], "delta": tuned[q] - base[q],
             "rank_before": ranks.get("base", {}).get(q), "rank_after": ranks.get("tuned", {}).get(q)} for q in base if q in tuned]
    rows.sort(key=lambda r: r["delta"])
    worst = [r for r in rows[:n] if r["delta"] < 0]
    best = [r for r in reversed(rows[-n:]) if r["delta"] > 0]
    return best + worst


def seen_unseen(per_query: dict[str, Any], test_qrels: dict[str, dict[str, int]], train_docs: set[str]) -> list[dict[str, Any]]:
    """Mean nDCG@10 of base and tuned on test queries whose relevant documents were / were not training positives.

    Supervised tuning can learn *which documents* tend to be relevant rather than how to
    match queries to documents; this split shows how much of the gain carries over to
    documents the model never saw as positives.
    """
    base, tuned = per_query["systems"]["base"], per_query["systems"]["tuned"]
    groups = {"relevant document seen in training": [], "no relevant document seen in training": []}
    for qid, judged in test_qrels.items():
        seen = any(score > 0 and doc in train_docs for doc, score in judged.items())
        groups["relevant document seen in training" if seen else "no relevant document seen in training"].append(qid)
    from retrieval.recommend import paired_p

    rows = []
    for name, qids in groups.items():
        qids = [q for q in qids if q in base and q in tuned]
        if qids:
            b, t = sum(base[q] for q in qids) / len(qids), sum(tuned[q] for q in qids) / len(qids)
            p = paired_p({q: tuned[q] for q in qids}, {q: base[q] for q in qids})
            rows.append({"group": name, "queries": len(qids), "base": b, "tuned": t, "delta": t - b, "p": p})
    return rows


def _short(group: str) -> str:
    return "unseen documents" if group.startswith("no ") else "seen documents"


def headline(ctx: dict[str, Any]) -> list[str]:
    """The report's first lines: which system to deploy, warnings, and nDCG@10 on all / seen / unseen test queries."""
    lines: list[str] = []
    rec = ctx.get("recommendation")
    if rec:
        lines += [f"**Deploy: {rec['deploy']}** (`{rec['system']}`), chosen on dev evidence: {rec['reason']}.", ""]
    warnings = list(rec["warnings"]) if rec else []
    unseen = next((r for r in ctx.get("seen_unseen") or [] if r["group"].startswith("no ")), None)
    if unseen and unseen["delta"] < 0:
        warnings.append(f"On the {unseen['queries']} test queries whose relevant documents were never training positives, "
                        f"the tuned model is worse than the base model: nDCG@10 {unseen['base']:.4f} -> "
                        f"{unseen['tuned']:.4f} ({unseen['delta']:+.4f}, p={unseen['p']:.3f}).")
    for warning in warnings:
        lines += [f"> **Warning.** {warning}", ""]
    base, tuned = ctx["metrics"].get("base", {}), ctx["metrics"].get("tuned", {})
    if base and tuned:
        parts = [f"all {ctx['n_queries']} test queries {base['ndcg@10']:.4f} -> {tuned['ndcg@10']:.4f} "
                 f"({tuned['ndcg@10'] - base['ndcg@10']:+.4f})"]
        parts += [f"{_short(r['group'])} ({r['queries']}) {r['base']:.4f} -> {r['tuned']:.4f} ({r['delta']:+.4f}, p={r['p']:.3f})"
                  for r in ctx.get("seen_unseen") or []]
        lines += [f"**nDCG@10 base -> tuned: {'; '.join(parts)}.** Recall@100 {base['recall@100']:.4f} -> "
                  f"{tuned['recall@100']:.4f}.", ""]
    return lines


def _recommendation_section(rec: dict[str, Any]) -> list[str]:
    lines = ["## Which system to deploy", "",
             f"Decided on the dev queries ({rec.get('dev_split', '')}), never on the test split: a system with the tuned "
             "model is ruled out when it is below its base counterpart on dev queries of unseen documents, or "
             "significantly below it on seen ones (paired t-test, p < 0.05) or on the forgetting guard's dataset; "
             "among the rest, the best nDCG@10 on the first group below wins, ties (within 0.005) go to the simpler system.", "",
             "| dev queries | n | " + " | ".join(rec["evidence"][next(iter(rec["evidence"]))]["mean"]) + " |",
             "|---|---:|" + "---:|" * len(rec["evidence"][next(iter(rec["evidence"]))]["mean"])]
    for group, ev in rec["evidence"].items():
        cells = [f"{v:.4f}" + (f" (p={ev['p_vs_base'][s]:.3f})" if s in ev["p_vs_base"] else "") for s, v in ev["mean"].items()]
        lines.append(f"| {group} documents | {ev['n']} | " + " | ".join(cells) + " |")
    lines.append("")
    for system, why in rec.get("disqualified", {}).items():
        lines.append(f"- `{system}` ruled out: {why}.")
    if rec.get("test"):
        lines += ["", f"The recommended system on the test split: nDCG@10 {rec['test']['ndcg@10']:.4f}, "
                      f"Recall@100 {rec['test']['recall@100']:.4f}."]
    return lines + [""]


def _seen_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| test queries | n | base nDCG@10 | tuned nDCG@10 | change | p |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['group']} | {r['queries']} | {r['base']:.4f} | {r['tuned']:.4f} | {r['delta']:+.4f} | "
              f"{r['p']:.3f} |" if r.get("p") is not None else
              f"| {r['group']} | {r['queries']} | {r['base']:.4f} | {r['tuned']:.4f} | {r['delta']:+.4f} | - |" for r in rows]
    return "\n".join(lines)


def _movers_table(rows: list[dict[str, Any]]) -> str:
    def rank(r):
        return "-" if r is None else str(r)

    lines = ["| query | nDCG@10 base -> tuned | first relevant rank |", "|---|---:|---:|"]
    for r in rows:
        text = r["query"].replace("|", "/")
        text = text if len(text) <= 90 else text[:87] + "..."
        lines.append(f"| {text} | {r['base']:.3f} -> {r['tuned']:.3f} ({r['delta']:+.3f}) | {rank(r['rank_before'])} -> {rank(r['rank_after'])} |")
    return "\n".join(lines)


def build_markdown(ctx: dict[str, Any]) -> str:
    """``ctx``: title, metrics, comparison, per_query, queries, figures {name: relative path}, general, geometry_md, settings."""
    metrics = {name: {m: scores[m] for m in HEADLINE if m in scores} for name, scores in ctx["metrics"].items()}
    parts = [f"# {ctx['title']}", "", *headline(ctx)]
    if ctx.get("recommendation"):
        parts += _recommendation_section(ctx["recommendation"])
    parts += ["## Metrics", "", markdown_table(metrics), ""]
    if ctx.get("comparison"):
        parts += ["## Significance", "", significance_markdown(ctx["comparison"]), ""]
    if ctx.get("per_query") and "tuned" in ctx["per_query"]["systems"]:
        wl = wins_losses(ctx["per_query"])
        parts += ["## Per query (tuned vs base, nDCG@10)", "",
                  f"{wl['wins']} queries improved, {wl['losses']} got worse, {wl['ties']} unchanged.", "",
                  "Biggest movers (first relevant rank: position of the first relevant document, - if not in the top 100):", "",
                  _movers_table(movers(ctx["per_query"], ctx["queries"])), ""]
    if ctx.get("seen_unseen"):
        parts += ["## Does the gain carry over to unseen documents?", "",
                  "Test queries split by whether any of their relevant documents was a positive in the training split. "
                  "A gain only on the first row means the model learnt which documents tend to be relevant, "
                  "not a better matching of queries to documents in general.", "", _seen_table(ctx["seen_unseen"]), ""]
    for name, caption in (("recall", "Recall@k before vs after"), ("training", "Training curve")):
        if name in ctx.get("figures", {}):
            parts += [f"## {caption}", "", f"![{caption}]({ctx['figures'][name]})", ""]
    if ctx.get("general"):
        g = ctx["general"]
        parts += [f"## Forgetting guard: {g['name']}", "",
                  "The same models on a second dataset the model was not tuned on; a drop here is general ability "
                  "lost to the domain gain.", "", markdown_table(g["metrics"]), ""]
    if ctx.get("widths"):
        from retrieval.widths import widths_markdown

        parts += ["## Matryoshka widths", "",
                  "The tuned model at each trained width (first d coordinates, renormalised, queries and documents "
                  "alike; exact search on the test split): what a shorter vector costs and saves. "
                  "`retrieval index build --dim d` builds that index.", "", widths_markdown(ctx["widths"]), ""]
    if ctx.get("geometry_md"):
        parts += [ctx["geometry_md"], ""]
    parts += ["## Settings and fingerprints", "", "Rerunning with these settings on data with these fingerprints reproduces this report.",
              "", "```json", json.dumps(ctx["settings"], indent=2, default=str), "```", ""]
    return "\n".join(parts)


def write_reports(run_dir: Path, ctx: dict[str, Any]) -> None:
    from jobs.html_report import to_html

    text = build_markdown(ctx)
    write_text(run_dir / "report.md", text)
    write_text(run_dir / "report.html", to_html(text, run_dir, ctx["title"]))


def write_run_report(run, dataset, opts, evaluation: dict, general: dict | None, geometry_md: str | None,
                     fingerprints: dict, seconds: dict, widths: list[dict] | None = None) -> None:
    """The main job's last stage: its figures, ``run.json`` (what the app reads) and ``report.md``/``report.html``."""
    import dataclasses

    from jobs import plots
    from retrieval import rundir

    summary = json.loads((run.path / "finetune.json").read_text()) if (run.path / "finetune.json").exists() else {}
    config = opts.config
    figures = {"recall": "report_files/recall_at_k.png"}
    plots.recall_curves(rundir.read_curves(run), run.path / figures["recall"])
    if summary.get("dev_history"):
        figures["training"] = "report_files/training.png"
        plots.training_curve(summary.get("train_log", []), summary["dev_history"], run.path / figures["training"],
                             select=summary.get("select", "ndcg@10"), loss=config.loss)
    settings = {"data": opts.data, "split": evaluation["split"], "fingerprints": fingerprints,
                "finetune": dataclasses.asdict(config), "fusion": opts.fusion, "k": opts.k,
                "dev_split": summary.get("dev_split"), "best_dev": summary.get("best_dev"),
                "mining": summary.get("mining"), "seconds": {**summary.get("seconds", {}), **seconds}}
    train_docs = {d for judged in dataset.qrels.get(config.train_split, {}).values() for d, sc in judged.items() if sc > 0}
    per_query = rundir.read_per_query(run)
    split_rows = seen_unseen(per_query, dataset.split(evaluation["split"]), train_docs)
    settings["seen_unseen"] = evaluation["seen_unseen"] = split_rows
    source = Path(dataset.source) if dataset.source else None
    rundir.write_info(run, data=opts.data, base_model=config.base, tuned_model="model", split=evaluation["split"],
                      settings=settings, recommendation=evaluation.get("recommendation"),
                      data_path=str(source.resolve()) if source and source.exists() else None)
    queries = dataset.split_queries(evaluation["split"])
    write_reports(run.path, {
        "recommendation": evaluation.get("recommendation"), "title": f"{config.base} tuned on {dataset.name}",
        "seen_unseen": split_rows, "metrics": evaluation["metrics"], "comparison": evaluation["comparison"],
        "per_query": per_query, "queries": queries, "n_queries": len(queries), "figures": figures,
        "general": general, "geometry_md": geometry_md, "settings": settings, "widths": widths})
