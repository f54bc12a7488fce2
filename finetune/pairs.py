"""Training examples from qrels: every query with *all* its positives, and a dev split.

An epoch goes over queries, not over (query, positive) pairs: each epoch samples
one positive per query, so a query with 100 positives weighs as much as a query
with one, and the cost of an epoch scales with the number of queries. Epochs are
laid out in advance (one block of rows per epoch, each with its own sample) so the
sentence-transformers trainer can run them as one pass, deterministically under the seed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from retrieval.data import Dataset, Qrels
from retrieval.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class TrainQueries:
    """Queries to train on: ids in a fixed order, their texts, their positive documents."""

    qids: list[str]
    texts: list[str]
    positives: list[list[str]]

    def __len__(self) -> int:
        return len(self.qids)

    def qrels(self) -> Qrels:
        return {q: {d: 1 for d in docs} for q, docs in zip(self.qids, self.positives)}


def train_queries(dataset: Dataset, qrels: Qrels) -> TrainQueries:
    """Queries of ``qrels`` with every document judged relevant (score > 0) that the corpus holds."""
    qids, texts, positives = [], [], []
    no_positive = 0
    for qid, judged in qrels.items():
        docs = [d for d, score in judged.items() if score > 0 and d in dataset.corpus]
        if not docs or qid not in dataset.queries:
            no_positive += 1
            continue
        qids.append(qid)
        texts.append(dataset.queries[qid])
        positives.append(sorted(docs))
    if no_positive:
        logger.warning("%d training queries have no relevant document in the corpus; skipped", no_positive)
    if not qids:
        raise DataError(f"{dataset.source}: no training query has a relevant document")
    return TrainQueries(qids, texts, positives)


def split_train_dev(
    dataset: Dataset, train_split: str = "train", dev_split: str = "dev", dev_fraction: float = 0.1, seed: int = 42
) -> tuple[Qrels, Qrels, str]:
    """``(train, dev, how)`` of :func:`finetune.dev_split.dev_split`: the dataset's dev split, or queries held out by document."""
    from finetune.dev_split import dev_split as split

    result = split(dataset, train_split, dev_split, dev_fraction, seed)
    return result.train, result.dev, result.how


def epoch_rows(queries: TrainQueries, epochs: int, seed: int = 42) -> list[tuple[int, str]]:
    """``(query_index, positive_doc_id)`` for every query in every epoch, one sampled positive each.

    Each epoch's block is shuffled; blocks follow each other, so with a sequential
    sampler epoch ``e`` covers rows ``[e*Q, (e+1)*Q)`` exactly.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(epochs):
        block = [(i, rng.choice(queries.positives[i])) for i in range(len(queries))]
        rng.shuffle(block)
        rows.extend(block)
    return rows
