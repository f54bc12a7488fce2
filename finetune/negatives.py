"""Hard-negative mining over the base model's FAISS index, with a false-negative filter.

Mined negatives are the main source of false negatives in fine-tuning: the documents that
score highest for a query are often relevant but unlabelled. So (1) every labelled positive
is excluded, (2) candidates come from a window of ranks below the very top (default 10-100
among the non-positive documents), (3) a candidate scoring above ``margin`` x the score of the
query's best positive is dropped as a likely false negative (the "TopK-PercPos" rule of
NV-Retriever, Moreira et al. 2024, arXiv:2407.15831) and written to ``suspects`` for a person
to review, and (4) ``num_negatives`` are sampled from what is left, reproducibly per query
under the seed. A query left with no candidate is *starved*: it is reported and still trains
with in-batch negatives. The index is reused, never rebuilt: the caller encodes the queries
with the same model (and prompt) that built it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from index import StoredIndex
from index.atomic import atomic_path, write_text
from index.build import normalize
from retrieval.encode import doc_text

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 300
FORMAT_VERSION = 1


@dataclass
class MiningConfig:
    """How hard negatives are chosen from the base model's ranking."""

    rank_start: int = field(default=10, metadata={"help": "first rank (1-based, among non-positive documents) a negative may come from"})
    rank_end: int = field(default=100, metadata={"help": "rank where the candidate window ends (exclusive)"})
    margin: float = field(default=0.95, metadata={"help": "drop candidates scoring above margin x the positive's score as likely false negatives (NV-Retriever)"})
    num_negatives: int = field(default=1, metadata={"help": "hard negatives sampled per query"})
    seed: int = field(default=0, metadata={"help": "seed of the per-query sampling"})

    def __post_init__(self) -> None:
        if not 1 <= self.rank_start < self.rank_end:
            raise ValueError(f"the rank window needs 1 <= rank_start < rank_end, got {self.rank_start}..{self.rank_end}")
        if self.num_negatives < 0:
            raise ValueError(f"num_negatives must be >= 0, got {self.num_negatives}")
        if not self.margin > 0:
            raise ValueError(f"margin must be positive, got {self.margin}")


@dataclass
class MinedNegatives:
    """The mined set. ``negatives`` has an entry (possibly empty) for every mined query."""

    negatives: dict[str, list[tuple[str, float]]]
    positive_scores: dict[str, float]
    suspects: list[dict]
    starved: list[str]
    config: MiningConfig | None = None

    def counts(self) -> dict[str, int]:
        return {
            "queries": len(self.negatives),
            "negatives": sum(len(v) for v in self.negatives.values()),
            "suspects": len(self.suspects),
            "starved": len(self.starved),
        }


def mine_hard_negatives(
    stored: StoredIndex,
    query_vectors: np.ndarray,
    qids: list[str],
    qrels: dict[str, dict[str, int]],
    config: MiningConfig,
    queries: dict[str, str] | None = None,
    corpus: dict | None = None,
) -> MinedNegatives:
    """Mine ``config.num_negatives`` negatives for each of ``qids`` (rows of ``query_vectors``).

    ``qrels`` gives each query's judgements; every document judged > 0 is a positive and is
    never mined. ``queries`` and ``corpus`` are only used for the text snippets of suspects.
    Raises ``ValueError`` when a query has no positive or a positive is not in the index.
    """
    if len(qids) != len(query_vectors):
        raise ValueError(f"{len(qids)} query ids but {len(query_vectors)} query vectors")
    positives = {qid: [d for d, s in qrels.get(qid, {}).items() if s > 0] for qid in qids}
    if missing := [qid for qid, docs in positives.items() if not docs]:
        raise ValueError(f"{len(missing)} queries have no positive judgement to mine against, e.g. {missing[:5]}")
    q = normalize(query_vectors) if stored.meta.normalized else np.ascontiguousarray(query_vectors, dtype=np.float32)
    best_positive = positive_scores(stored, q, [positives[qid] for qid in qids])
    depth = config.rank_end - 1 + max(len(docs) for docs in positives.values())
    hits, scores = stored.search(q, depth)

    mined = MinedNegatives(negatives={}, positive_scores={}, suspects=[], starved=[], config=config)
    for row, qid in enumerate(qids):
        known = set(positives[qid])
        ranked = [(doc, float(score)) for doc, score in zip(hits[row], scores[row]) if doc not in known]
        window = ranked[config.rank_start - 1 : config.rank_end - 1]
        best_doc, best_score = best_positive[row]
        limit = config.margin * best_score
        kept = []
        for rank, (doc, score) in enumerate(window, start=config.rank_start):
            if score > limit:
                mined.suspects.append(_suspect(qid, doc, score, rank, best_doc, best_score, queries, corpus))
            else:
                kept.append((doc, score))
        mined.positive_scores[qid] = best_score
        mined.negatives[qid] = _sample(kept, config.num_negatives, config.seed, qid)
        if not kept and config.num_negatives > 0:  # a query-side run asks for none: nothing is starved
            mined.starved.append(qid)
    logger.info("mined hard negatives: %s", ", ".join(f"{k} {v}" for k, v in mined.counts().items()))
    if mined.starved:
        logger.warning("%d queries kept no hard negative after filtering; they train with in-batch negatives only", len(mined.starved))
    return mined


def positive_scores(stored: StoredIndex, normalized_queries: np.ndarray, positives: list[list[str]]) -> list[tuple[str, float]]:
    """(doc id, score) of each query's best-scoring positive, from the index's stored vectors."""
    position = {doc: i for i, doc in enumerate(stored.meta.doc_ids)}
    if absent := sorted({doc for docs in positives for doc in docs if doc not in position}):
        raise ValueError(f"{len(absent)} positive documents are not in the index at {stored.path}, e.g. {absent[:5]}: "
                         "the index was built from another corpus")
    vectors = stored.vectors()
    out = []
    for query, docs in zip(normalized_queries, positives):
        rows = [position[doc] for doc in docs]
        doc_vectors = np.asarray(vectors[rows]) if vectors is not None else _reconstruct(stored, rows)
        doc_scores = doc_vectors.astype(np.float32) @ query
        best = int(np.argmax(doc_scores))
        out.append((docs[best], float(doc_scores[best])))
    return out


def _reconstruct(stored: StoredIndex, rows: list[int]) -> np.ndarray:
    try:
        return np.stack([stored.index.reconstruct(int(i)) for i in rows])
    except RuntimeError as err:
        raise ValueError(f"the index at {stored.path} has no embeddings.npy and cannot reconstruct vectors "
                         f"({stored.meta.factory}); rebuild it with embeddings saved") from err


def _sample(kept: list[tuple[str, float]], n: int, seed: int, qid: str) -> list[tuple[str, float]]:
    """``n`` of ``kept`` at random, in rank order; the draw depends only on (seed, qid)."""
    if len(kept) <= n:
        return list(kept)
    rng = np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])
    chosen = sorted(rng.choice(len(kept), size=n, replace=False).tolist())
    return [kept[i] for i in chosen]


def _snippet(corpus: dict | None, doc: str) -> str | None:
    if corpus is None or doc not in corpus:
        return None
    return doc_text(corpus[doc])[:SNIPPET_CHARS]


def _suspect(qid, doc, score, rank, positive, positive_score, queries, corpus) -> dict[str, Any]:
    return {
        "query_id": qid, "doc_id": doc, "rank": rank, "doc_score": score,
        "positive_id": positive, "positive_score": positive_score,
        "query_text": None if queries is None else queries.get(qid),
        "doc_snippet": _snippet(corpus, doc), "positive_snippet": _snippet(corpus, positive),
    }


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def save_mined(mined: MinedNegatives, folder: Path) -> None:
    """Write ``negatives.jsonl``, ``suspects.jsonl`` and ``mining.json`` (config, counts, starved) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_jsonl(folder / "negatives.jsonl", [
        {"query_id": qid, "positive_score": mined.positive_scores.get(qid),
         "negatives": [{"doc_id": d, "score": s} for d, s in negs]}
        for qid, negs in mined.negatives.items()
    ])
    _write_jsonl(folder / "suspects.jsonl", mined.suspects)
    summary = {
        "format_version": FORMAT_VERSION,
        "config": dataclasses.asdict(mined.config) if mined.config is not None else None,
        "counts": mined.counts(),
        "starved": mined.starved,
    }
    write_text(folder / "mining.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")


def load_mined(folder: Path) -> MinedNegatives:
    """Read back what :func:`save_mined` wrote."""
    folder = Path(folder)
    summary = json.loads((folder / "mining.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (folder / "negatives.jsonl").read_text(encoding="utf-8").splitlines() if line]
    suspects = [json.loads(line) for line in (folder / "suspects.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return MinedNegatives(
        negatives={r["query_id"]: [(n["doc_id"], n["score"]) for n in r["negatives"]] for r in rows},
        positive_scores={r["query_id"]: r["positive_score"] for r in rows},
        suspects=suspects,
        starved=list(summary["starved"]),
        config=MiningConfig(**summary["config"]) if summary.get("config") else None,
    )
