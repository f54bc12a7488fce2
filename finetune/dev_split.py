"""Dev queries that measure what users meet: held out *by document*, labelled seen / unseen.

A fine-tuned retriever can learn which documents tend to be answers instead of how to
match a query to a document. A dev split drawn at random from the training queries shares
most of its positive documents with training, so it rewards exactly that memorisation and
picks the checkpoint that is worst on next month's documents. Here:

* the training queries are grouped into connected components of shared positive documents
  (two queries are linked when they share a positive), and whole components are held out:
  no positive of these dev queries is a training positive ("dev-unseen");
* when the data allows, a second group is held out whose every positive stays a positive of
  some remaining training query ("dev-seen"): the situation the model was trained for;
* a dataset's own dev split is used as it is, each query labelled seen or unseen the same way;
* a dataset whose queries form one giant component (every query linked to every other
  through shared documents) cannot be held out by document: the split falls back to random
  queries, with a warning naming the component.

Checkpoints (and anything else chosen on dev) are selected on dev-unseen by default.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from retrieval.data import Qrels

logger = logging.getLogger(__name__)


@dataclass
class DevSplit:
    """Training qrels, dev qrels, and which dev queries' positives were (not) training positives."""

    train: Qrels
    dev: Qrels
    unseen: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    how: str = ""

    def groups(self) -> dict[str, list[str]]:
        """``{"unseen": qids, "seen": qids}``, leaving out an empty group."""
        return {name: qids for name, qids in (("unseen", self.unseen), ("seen", self.seen)) if qids}

    def summary(self) -> dict[str, object]:
        return {"how": self.how, "train_queries": len(self.train), "dev_queries": len(self.dev),
                "dev_unseen": sorted(self.unseen), "dev_seen": sorted(self.seen)}


def positives(qrels: Qrels) -> set[str]:
    return {d for judged in qrels.values() for d, score in judged.items() if score > 0}


def label_seen(dev: Qrels, train: Qrels) -> tuple[list[str], list[str]]:
    """``(seen, unseen)`` dev query ids: seen when any relevant document is a training positive."""
    train_docs = positives(train)
    seen = [q for q, judged in dev.items() if any(s > 0 and d in train_docs for d, s in judged.items())]
    seen_set = set(seen)
    return seen, [q for q in dev if q not in seen_set]


def components(qrels: Qrels) -> list[list[str]]:
    """Queries grouped by shared positive documents (union-find), each group sorted, largest first."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for qid, judged in qrels.items():
        find("q:" + qid)
        for doc, score in judged.items():
            if score > 0:
                parent[find("q:" + qid)] = find("d:" + doc)
    groups: dict[str, list[str]] = {}
    for qid in qrels:
        groups.setdefault(find("q:" + qid), []).append(qid)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def split_by_document(train: Qrels, fraction: float = 0.1, seed: int = 42, name: str = "train") -> DevSplit:
    """Hold out about ``fraction`` of ``train``'s queries as whole components (dev-unseen), plus dev-seen.

    dev-seen gets up to half as many queries again, each taken from a component that keeps
    at least one other query covering all of its positives, so they stay training positives.
    Deterministic under ``seed``. One giant component falls back to a random split (warned).
    """
    qids = sorted(train)
    if len(qids) < 2:
        from retrieval.errors import DataError

        raise DataError(f"{len(qids)} training query in split {name!r}; need at least 2 to hold out a dev split")
    target = max(1, round(len(qids) * fraction))
    groups = components(train)
    if len(qids) - len(groups[0]) < target:
        return _random_fallback(train, qids, target, seed, name, groups[0])
    rng = random.Random(seed)
    order = list(range(len(groups)))
    rng.shuffle(order)
    unseen: list[str] = []
    for i in order:
        if len(unseen) >= target:
            break
        if len(unseen) + len(groups[i]) <= target:
            unseen.extend(groups[i])
    if not unseen:  # every component is larger than the target: the smallest one that is not the largest
        unseen = list(min(groups[1:], key=len))
    held = set(unseen)
    seen = _seen_queries(train, [g for g in groups if not held & set(g)], max(0, target // 2), rng)
    dev_ids = held | set(seen)
    rest = {q: d for q, d in train.items() if q not in dev_ids}
    how = (f"{len(dev_ids)} of {len(qids)} {name!r} queries held out by document (seed {seed}): "
           f"{len(unseen)} whose relevant documents are never training positives (dev-unseen), "
           f"{len(seen)} whose relevant documents stay training positives (dev-seen)")
    return DevSplit(rest, {q: train[q] for q in qids if q in dev_ids}, sorted(unseen), sorted(seen), how)


def _seen_queries(train: Qrels, groups: list[list[str]], wanted: int, rng: random.Random) -> list[str]:
    """Up to ``wanted`` queries whose positives all remain positives of other (kept) queries."""
    candidates = [q for g in groups if len(g) > 1 for q in g]
    rng.shuffle(candidates)
    coverage: dict[str, int] = {}
    for g in groups:
        for q in g:
            for d, s in train[q].items():
                if s > 0:
                    coverage[d] = coverage.get(d, 0) + 1
    chosen = []
    for q in candidates:
        if len(chosen) >= wanted:
            break
        docs = [d for d, s in train[q].items() if s > 0]
        if all(coverage[d] > 1 for d in docs):
            chosen.append(q)
            for d in docs:
                coverage[d] -= 1
    return chosen


def _random_fallback(train: Qrels, qids: list[str], target: int, seed: int, name: str, giant: list[str]) -> DevSplit:
    docs = sorted(positives({q: train[q] for q in giant}))
    logger.warning(
        "split %r: %d of %d training queries form one component of shared relevant documents (%d documents, "
        "e.g. %s), so dev queries cannot be held out by document; holding out %d random queries instead: "
        "dev scores will favour models that memorise documents", name, len(giant), len(qids), len(docs),
        ", ".join(docs[:3]), target)
    shuffled = list(qids)
    random.Random(seed).shuffle(shuffled)
    dev_ids = set(shuffled[:target])
    rest = {q: d for q, d in train.items() if q not in dev_ids}
    dev = {q: train[q] for q in qids if q in dev_ids}
    seen, unseen = label_seen(dev, rest)
    how = (f"{len(dev)} of {len(qids)} {name!r} queries held out at random (seed {seed}): one component holds "
           f"{len(giant)} queries, so no split by document; {len(unseen)} dev-unseen, {len(seen)} dev-seen")
    return DevSplit(rest, dev, sorted(unseen), sorted(seen), how)


def dev_split(dataset, train_split: str = "train", dev_name: str = "dev", fraction: float = 0.1, seed: int = 42) -> DevSplit:
    """The dataset's own ``dev_name`` split when it has one (labelled seen/unseen); else :func:`split_by_document`."""
    train = dataset.split(train_split)
    if dev_name in dataset.qrels and dev_name != train_split:
        dev = dataset.qrels[dev_name]
        seen, unseen = label_seen(dev, train)
        how = f"the dataset's {dev_name!r} split: {len(unseen)} dev-unseen, {len(seen)} dev-seen queries"
        return DevSplit(train, dev, sorted(unseen), sorted(seen), how)
    return split_by_document(train, fraction, seed, train_split)
