"""What the app computes, kept free of Streamlit so tests and ``bench/app_latency.py`` call it directly.

A query is encoded by each model and searched in that model's index through
:func:`retrieval.retriever.search` (which refuses a model the index was not built
for). Each side searches ``DEPTH`` deep even when fewer hits are shown, so a rank
change badge and the rank of the first relevant document are exact down to rank 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.retriever import search

MAX_QUERY_CHARS = 1000
DEPTH = 100
SNIPPET_CHARS = 240


@dataclass
class Hit:
    """One retrieved document as shown in a result column."""

    rank: int
    doc_id: str
    score: float
    title: str = ""
    snippet: str = ""
    relevant: bool = False
    badge: str = ""  # tuned side only: "↑3", "↓2", "new" or "" (same rank)


def clean_query(text: str | None, cap: int = MAX_QUERY_CHARS) -> tuple[str, bool]:
    """The query as searched (stripped, cut at ``cap`` characters) and whether it was cut."""
    text = (text or "").strip()
    return (text[:cap].rstrip(), True) if len(text) > cap else (text, False)


def ranked(stored, model, query: str, depth: int = DEPTH) -> list[tuple[str, float]]:
    """``(doc_id, score)`` best first for one query: encode + FAISS search, as evaluation does."""
    run = search(stored, model, {"q": query}, k=depth, name="app", progress=False).to_dict()
    return sorted(run.get("q", {}).items(), key=lambda kv: -kv[1])


def snippet(doc: dict[str, str], cap: int = SNIPPET_CHARS) -> str:
    text = " ".join((doc.get("text") or "").split())
    return text if len(text) <= cap else text[:cap].rsplit(" ", 1)[0] + " …"


def hits(
    ranking: list[tuple[str, float]],
    k: int,
    corpus: dict[str, dict[str, str]],
    relevant: dict[str, int] | None = None,
    before: list[tuple[str, float]] | None = None,
) -> list[Hit]:
    """The top ``k`` of ``ranking`` as :class:`Hit` rows; ``before`` (the base ranking) sets the badges."""
    relevant = relevant or {}
    old = {doc: r for r, (doc, _) in enumerate(before or [], 1)}
    out = []
    for rank, (doc_id, score) in enumerate(ranking[:k], 1):
        doc = corpus.get(doc_id, {})
        out.append(
            Hit(
                rank=rank, doc_id=doc_id, score=float(score), title=doc.get("title") or doc_id,
                snippet=snippet(doc), relevant=relevant.get(doc_id, 0) > 0,
                badge="" if before is None else badge(old.get(doc_id), rank),
            )
        )
    return out


def badge(old_rank: int | None, new_rank: int) -> str:
    """``↑n`` when a document moved up ``n`` places, ``↓n`` down, ``new`` when it was not in the base ranking."""
    if old_rank is None:
        return "new"
    if old_rank == new_rank:
        return ""
    return f"↑{old_rank - new_rank}" if old_rank > new_rank else f"↓{new_rank - old_rank}"


def first_relevant(ranking: list[tuple[str, float]], relevant: dict[str, int]) -> int | None:
    return next((r for r, (doc, _) in enumerate(ranking, 1) if relevant.get(doc, 0) > 0), None)


def query_lookup(queries: dict[str, str]) -> dict[str, str]:
    """Query text (stripped) -> query id, to recognise a typed test query."""
    return {" ".join(text.split()): qid for qid, text in queries.items()}


def match_query(text: str, lookup: dict[str, str]) -> str | None:
    return lookup.get(" ".join(text.split()))


def metrics_rows(metrics: dict[str, dict[str, float]], comparison: dict | None, against: str = "base",
                 system: str = "tuned") -> list[dict]:
    """One row per metric: each system's score, then ``system`` minus ``against`` and the paired test's p-value.

    The p-value is ranx ``compare``'s (``comparison[system]["comparisons"][against][metric]``); None
    where the run has no comparison or the test is undefined (identical runs).
    """
    names = list(dict.fromkeys(m for scores in metrics.values() for m in scores))
    pvalues = ((comparison or {}).get(system) or {}).get("comparisons", {}).get(against, {})
    paired = system in metrics and against in metrics
    rows = []
    for m in names:
        row = {"metric": m, **{s: scores.get(m) for s, scores in metrics.items()}}
        if paired:
            row[f"{system} − {against}"] = metrics[system][m] - metrics[against][m]
            row["p"] = pvalues.get(m)
        rows.append(row)
    return rows


def per_query_rows(per_query: dict, queries: dict[str, str]) -> list[dict]:
    """Base vs tuned score per query, with the delta and the first relevant rank before -> after."""
    systems = per_query.get("systems", {})
    base, tuned = systems.get("base", {}), systems.get("tuned")
    ranks = per_query.get("first_relevant_rank", {})
    metric = per_query.get("metric", "score")
    rows = []
    for qid, before in base.items():
        row = {"qid": qid, "query": queries.get(qid, ""), f"base {metric}": before}
        if tuned is not None:
            after = tuned.get(qid, 0.0)
            row[f"tuned {metric}"] = after
            row["delta"] = after - before
        row["first relevant"] = _rank_change(ranks.get("base", {}).get(qid), ranks.get("tuned", {}).get(qid), tuned is not None)
        rows.append(row)
    return rows


def _rank_change(before: int | None, after: int | None, has_tuned: bool) -> str:
    show = lambda r: "–" if r is None else str(r)  # noqa: E731
    return f"{show(before)} → {show(after)}" if has_tuned else show(before)


# One hue per system, distinct for colour-blind readers (Okabe-Ito): base grey, tuned blue, BM25 orange,
# hybrids green and purple; any other system takes the next unused colour.
SYSTEM_COLORS = {"base": "#7f7f7f", "tuned": "#0072b2", "bm25": "#e69f00", "hybrid": "#009e73",
                 "base+bm25": "#cc79a7", "tuned+bm25": "#009e73"}
SPARE_COLORS = ["#d55e00", "#56b4e9", "#f0e442", "#000000"]


def system_colors(systems: list[str]) -> list[str]:
    """A colour per system in ``systems`` order, never the same colour twice."""
    used, out = set(), []
    spare = iter(SPARE_COLORS)
    for name in systems:
        color = SYSTEM_COLORS.get(name)
        if color is None or color in used:
            color = next((c for c in spare if c not in used), "#333333")
        used.add(color)
        out.append(color)
    return out


def format_p(p: float | None) -> str:
    """A p-value as people read them: ``0.031``, ``<0.0001`` for tiny ones, a dash where there is none."""
    if p is None or p != p:
        return "–"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def curve_rows(curves: dict) -> list[dict]:
    """``curves.json`` as rows ``{"k": k, system: recall@k, ...}`` for a line chart."""
    return [{"k": k, **{s: values[i] for s, values in curves["recall"].items()}} for i, k in enumerate(curves["k"])]


def scalars(obj: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a nested dict, keyed by its dotted path (lists are left to the plots)."""
    out: dict[str, float] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def geometry_rows(geometry: dict) -> list[dict]:
    """``geometry.json`` as one row per measure and one column per model (top-level key); settings left out."""
    models = {name: scalars(value) for name, value in geometry.items() if isinstance(value, dict)}
    loose = scalars({k: v for k, v in geometry.items() if not isinstance(v, dict)})
    measures = [m for m in dict.fromkeys(m for values in models.values() for m in values) if not m.startswith("config.")]
    rows = [{"measure": m, **{name: values.get(m) for name, values in models.items()}} for m in measures]
    return rows + [{"measure": m, "value": v} for m, v in loose.items()]
