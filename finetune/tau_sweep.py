"""Temperature sweep: short fine-tunes at several InfoNCE temperatures, scored by nDCG@10 and uniformity.

Why: tau sets how hard the loss pushes on the closest negatives (Wang & Liu 2021,
*Understanding the Behaviour of Contrastive Loss*): a small tau spreads the space
out (lower uniformity) but can break the local structure retrieval needs; the sweep
shows where the trade-off lands on the user's data. Each tau is a full
:func:`finetune.train.finetune` run in its own folder (so reruns resume) with
every other setting shared; nothing here changes how training works.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from finetune.config import FinetuneConfig
from retrieval.data import Dataset

logger = logging.getLogger(__name__)

TAUS = (0.01, 0.05, 0.1, 0.5)


def _doc_vectors(model, dataset: Dataset, folders: list[Path]) -> np.ndarray | None:
    """Embeddings of a saved index (under ``folders``) that this model's document encoder built, if any."""
    from retrieval.retriever import IndexSpec, find_matching_index

    stored = find_matching_index(model, dataset.corpus, IndexSpec(), folders)  # Flat: its vectors are always there
    vectors = stored.vectors() if stored is not None else None
    return None if vectors is None else np.asarray(vectors)


def _unseen_queries(dataset: Dataset, split: str) -> list[str]:
    """Queries of ``split`` none of whose relevant documents is a positive of the ``train`` split."""
    from finetune.dev_split import label_seen

    return label_seen(dataset.split(split), dataset.split("train"))[1] if "train" in dataset.qrels else []


def _group_mean(run_dir: Path, system: str, qids: list[str]) -> float | None:
    """Mean per-query nDCG@10 of ``system`` over ``qids``, read from the run's ``per_query.json``."""
    from retrieval.rundir import read_per_query

    per_query = read_per_query(run_dir)
    scores = (per_query or {}).get("systems", {}).get(system, {})
    values = [scores[q] for q in qids if q in scores]
    return float(np.mean(values)) if values else None


def tau_sweep(
    dataset: Dataset, config: FinetuneConfig, out: str | Path, taus: tuple[float, ...] = TAUS,
    base_index: str | Path | None = None, n_pairs: int = 100_000, seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune once per tau (``out/tau-<tau>``) and return tau, test nDCG@10 and uniformity per run.

    nDCG@10 is reported on every test query and on those of unseen documents (no relevant
    document a ``train`` positive), for the tuned and the base model, as the K bench does:
    a temperature that only helps documents the training returned is not a gain.
    Uniformity (Wang & Isola 2020, t=2) is measured on the test queries with the
    tuned query encoder and on the documents of the tuned model's index (in mode
    ``query`` the document side is the base model's, so only the query side moves).
    """
    from retrieval.encode import encode
    from retrieval.geometry import uniformity, unit
    from retrieval.models import load_model

    from finetune.train import finetune

    out = Path(out)
    split = config.test_split or "test"
    queries = dataset.split_queries(split)
    texts = [queries[q] for q in sorted(queries)]
    unseen = _unseen_queries(dataset, split)
    rows: dict[str, list] = {"tau": [], "ndcg@10": [], "base_ndcg@10": [], "unseen_ndcg@10": [],
                             "base_unseen_ndcg@10": [], "uniformity": [], "query_uniformity": [], "model": []}
    for tau in taus:
        run_dir = out / f"tau-{tau:g}"
        logger.info("tau sweep: fine-tuning at tau=%g into %s", tau, run_dir)
        result = finetune(dataset, dataclasses.replace(config, temperature=tau, test_split=split), run_dir, base_index)
        model = load_model(str(result.model_path))
        q_vecs = unit(encode(model, texts, None, config.batch_size_encode, False, role="query"))
        folders = sorted((run_dir / "indexes").glob("*")) + ([Path(base_index)] if base_index else [])
        docs = _doc_vectors(model, dataset, folders)
        metrics = result.test_metrics or {}
        rows["tau"].append(float(tau))
        rows["ndcg@10"].append(metrics.get("tuned", {}).get("ndcg@10"))
        rows["base_ndcg@10"].append(metrics.get("base", {}).get("ndcg@10"))
        for system, key in (("tuned", "unseen_ndcg@10"), ("base", "base_unseen_ndcg@10")):
            rows[key].append(_group_mean(run_dir, system, unseen))
        rows["uniformity"].append(None if docs is None else uniformity(docs, n_pairs=n_pairs, seed=seed))
        rows["query_uniformity"].append(uniformity(q_vecs, n_pairs=n_pairs, seed=seed) if len(q_vecs) > 1 else None)
        rows["model"].append(str(result.model_path))
    rows.update({"split": split, "mode": config.mode, "epochs": config.epochs, "base": config.base,
                 "unseen_queries": len(unseen)})
    return rows
