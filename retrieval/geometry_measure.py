"""Every geometry measure of one model's embeddings in one call, and the settings it ran with.

:func:`measure_all` is what ``retrieval geometry`` and the main job's geometry stage run per model
(:mod:`retrieval.geometry_job` encodes, this measures, :mod:`retrieval.geometry_plots` draws); the
measures themselves are the plain functions of :mod:`retrieval.geometry`. Its result is JSON-ready
and carries its :class:`GeometryConfig`, so every number is stored beside the settings that made it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from retrieval.geometry import (
    DEFAULT_KS,
    DEFAULT_SIGMAS,
    alignment,
    anisotropy,
    class_similarity,
    infonce_vs_k,
    linear_probe,
    pca_2d,
    umap_2d,
    uniformity,
    unit,
)


@dataclass
class GeometryConfig:
    """Settings of :func:`measure_all`; each is recorded beside the numbers it produced."""

    n_pairs: int = field(default=100_000, metadata={"help": "random pairs for anisotropy, uniformity and class cosines"})
    alpha: float = field(default=2.0, metadata={"help": "exponent of the alignment distance (Wang & Isola: 2)"})
    t: float = field(default=2.0, metadata={"help": "uniformity potential scale (Wang & Isola: 2)"})
    temperature: float = field(default=0.05, metadata={"help": "InfoNCE temperature tau for the loss-vs-K curve"})
    ks: tuple[int, ...] = field(default=DEFAULT_KS, metadata={"help": "numbers of negatives K for the InfoNCE curve"})
    sigmas: tuple[float, ...] = field(default=DEFAULT_SIGMAS, metadata={"help": "probe noise norms (relative to unit vectors)"})
    train_fraction: float = field(default=0.2, metadata={"help": "share of each class that trains the linear probe"})
    infonce_candidates: int = field(default=8192, metadata={"help": "documents the InfoNCE negatives are drawn from "
                                                                     "(a seeded sample when the corpus is larger)"})
    pca_classes: int = field(default=10, metadata={"help": "largest classes coloured in the 2-D projection"})
    pca_background: int = field(default=1000, metadata={"help": "unlabelled documents drawn grey behind them"})
    seed: int = field(default=0, metadata={"help": "seed of every sampling step"})


def _projection(doc_vecs: np.ndarray, class_vecs: np.ndarray | None, labels: np.ndarray | None,
                cfg: GeometryConfig) -> dict:
    rng = np.random.default_rng(cfg.seed)
    background = doc_vecs[rng.choice(len(doc_vecs), min(cfg.pca_background, len(doc_vecs)), replace=False)]
    out = {"explained_variance": [], "background": [], "points": [], "labels": []}
    if class_vecs is not None and labels is not None and len(labels):
        top = [c for c, _ in sorted(Counter(labels.tolist()).items(), key=lambda kv: (-kv[1], str(kv[0])))][:cfg.pca_classes]
        keep = np.isin(labels, top)
        class_vecs, out["labels"] = class_vecs[keep], [str(c) for c in labels[keep]]
    else:
        class_vecs = doc_vecs[:0]
    fit = np.concatenate([background, class_vecs])
    points, out["explained_variance"] = pca_2d(fit, fit)
    out["background"] = np.round(points[:len(background)], 4).tolist()
    out["points"] = np.round(points[len(background):], 4).tolist()
    umap_points = umap_2d(fit, cfg.seed) if len(fit) > 15 else None
    if umap_points is not None:
        out["umap_background"] = np.round(umap_points[:len(background)], 4).tolist()
        out["umap_points"] = np.round(umap_points[len(background):], 4).tolist()
    return out


def _infonce(doc_vecs: np.ndarray, q_vecs: np.ndarray, pos_vecs: np.ndarray,
             exclude: Sequence[Sequence[int]] | None, cfg: GeometryConfig) -> dict:
    """InfoNCE vs K over at most ``cfg.infonce_candidates`` documents (keeps the score matrix small)."""
    if len(doc_vecs) <= cfg.infonce_candidates:
        return infonce_vs_k(q_vecs, pos_vecs, doc_vecs, cfg.ks, cfg.temperature, cfg.seed, exclude)
    keep = np.sort(np.random.default_rng(cfg.seed).choice(len(doc_vecs), cfg.infonce_candidates, replace=False))
    new_row = np.full(len(doc_vecs), -1)
    new_row[keep] = np.arange(len(keep))
    kept = None if exclude is None else [new_row[np.asarray(r, dtype=np.int64)] for r in exclude]
    kept = None if kept is None else [r[r >= 0] for r in kept]
    return infonce_vs_k(q_vecs, pos_vecs, doc_vecs[keep], cfg.ks, cfg.temperature, cfg.seed, kept)


def measure_all(
    doc_vecs: np.ndarray, q_vecs: np.ndarray, pos_vecs: np.ndarray, class_vecs: np.ndarray | None = None,
    class_labels: Sequence | None = None, exclude: np.ndarray | None = None, config: GeometryConfig | None = None,
) -> dict:
    """Every measure for one model, as a JSON-ready dict.

    ``doc_vecs``: the corpus (or a sample); ``q_vecs``/``pos_vecs``: row-aligned
    (query, relevant document) pairs (their distinct queries also get anisotropy
    and uniformity: a model tuned on the query side only changes nothing else); ``class_vecs``/``class_labels``: labelled
    documents for the class measures (skipped when absent or fewer than two
    classes); ``exclude``: per pair, the rows of ``doc_vecs`` not to draw as InfoNCE
    negatives (the query's relevant documents).
    """
    cfg = config or GeometryConfig()
    queries = np.unique(unit(q_vecs), axis=0)  # one row per distinct query (pairs repeat a query per relevant doc)
    labels = np.asarray(class_labels) if class_labels is not None else None
    result = {
        "anisotropy": anisotropy(doc_vecs, cfg.n_pairs, cfg.seed),
        "alignment": alignment(q_vecs, pos_vecs, cfg.alpha),
        "uniformity": uniformity(doc_vecs, cfg.t, cfg.n_pairs, cfg.seed),
        "query_anisotropy": anisotropy(queries, cfg.n_pairs, cfg.seed) if len(queries) > 1 else None,
        "query_uniformity": uniformity(queries, cfg.t, cfg.n_pairs, cfg.seed) if len(queries) > 1 else None,
        "class_similarity": None, "linear_probe": None,
        "infonce": _infonce(doc_vecs, q_vecs, pos_vecs, exclude, cfg),
        "projection": _projection(unit(doc_vecs), None if class_vecs is None else unit(class_vecs), labels, cfg),
        "counts": {"documents": int(len(doc_vecs)), "pairs": int(len(q_vecs)),
                   "labelled_documents": int(0 if labels is None else len(labels)),
                   "classes": int(0 if labels is None else len(np.unique(labels)))},
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
    }
    if labels is not None and len(np.unique(labels)) >= 2:
        result["class_similarity"] = class_similarity(class_vecs, labels, min(cfg.n_pairs, 50_000), seed=cfg.seed)
        result["linear_probe"] = linear_probe(class_vecs, labels, cfg.train_fraction, cfg.sigmas, cfg.seed)
    return result
