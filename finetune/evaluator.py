"""Dev-set nDCG@10 during training, computed by the same ranx code as ``retrieval eval``.

In mode ``query`` the documents are the frozen base embeddings, so a dev
evaluation costs only the dev queries' encoding. In mode ``full`` documents
change with the model; re-encoding the whole corpus at every evaluation would
dominate training, so documents are a fixed *pool*: every dev positive plus the
base model's top ``pool_depth`` per dev query. The pool ranks checkpoints
against each other; the test figure always comes from the whole corpus.

Dev queries come in groups (:mod:`finetune.dev_split`): ``unseen`` (no relevant document
is a training positive) and ``seen``. Every evaluation scores all of dev and each group
(``dev_ndcg@10``, ``dev_unseen_ndcg@10``, ``dev_seen_ndcg@10``, ...); ``select`` names the
group whose nDCG@10 picks the checkpoint (``"unseen"`` by default, ``"all"`` for every dev query).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from retrieval.evaluate import evaluate
from retrieval.retriever import run_from_hits


class DevEvaluator(BaseEvaluator):
    def __init__(
        self,
        queries: dict[str, str],
        qrels: dict[str, dict[str, int]],
        doc_ids: list[str],
        documents: np.ndarray | None = None,
        doc_texts: list[str] | None = None,
        k: int = 100,
        batch_size: int = 64,
        name: str = "dev",
        groups: dict[str, list[str]] | None = None,
        select: str = "all",
        bf16: bool = False,
    ) -> None:
        """Give ``documents`` (frozen, normalised) for mode query, or ``doc_texts`` to re-encode (mode full)."""
        super().__init__()
        if (documents is None) == (doc_texts is None):
            raise ValueError("give exactly one of documents (frozen) or doc_texts (re-encoded)")
        self.queries, self.qrels, self.doc_ids = queries, qrels, doc_ids
        self.documents = None if documents is None else torch.from_numpy(np.ascontiguousarray(documents, dtype=np.float32))
        self.doc_texts, self.k, self.batch_size, self.name = doc_texts, k, batch_size, name
        self.groups = {g: [q for q in qids if q in qrels] for g, qids in (groups or {}).items()}
        self.groups = {g: qids for g, qids in self.groups.items() if qids}
        self.select = select if select in self.groups else "all"
        self.bf16 = bf16  # encode under bf16 autocast, as training runs (the pool is re-encoded at every evaluation)
        self.select_key = self.metric_key(self.select)  # unprefixed; the trainer reads eval_<name>_<select_key>
        self.primary_metric = self.select_key
        self.history: list[dict[str, float]] = []

    def __call__(self, model, output_path: str | None = None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        metrics = self.score(self.rank(model))
        self.history.append({"epoch": round(float(epoch), 3), "step": int(steps), **metrics})
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def selected(self, model) -> float:
        """The selection score (nDCG@10 on the ``select`` group) of ``model``, without touching the history."""
        return self.score(self.rank(model))[self.select_key]

    def rank(self, model):
        """The top ``k`` of every dev query under ``model``, as a ranx Run."""
        import contextlib

        qids = list(self.queries)
        device = model.device.type
        with torch.autocast(device, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext():
            q, docs = self._encode(model, qids)
        return self._top(qids, q, docs)  # scored in fp32: bf16 scores tie and do not convert to numpy

    def _encode(self, model, qids: list[str]):
        q = model.encode_query([self.queries[x] for x in qids], batch_size=self.batch_size, convert_to_tensor=True,
                               show_progress_bar=False).float().cpu()
        if self.documents is not None:
            return q, self.documents
        docs = model.encode_document(self.doc_texts, batch_size=self.batch_size, convert_to_tensor=True,
                                     show_progress_bar=False).float().cpu()
        return q, docs

    def _top(self, qids: list[str], q, docs):
        scores = F.normalize(q.float(), dim=-1) @ F.normalize(docs.float(), dim=-1).T
        top, idx = scores.topk(min(self.k, scores.size(1)), dim=1)
        return run_from_hits(qids, [[self.doc_ids[j] for j in row] for row in idx.tolist()], top.numpy(), self.name)

    @staticmethod
    def metric_key(group: str, metric: str = "ndcg@10") -> str:
        """The key of ``metric`` on ``group`` ("all" for every dev query) in this evaluator's results."""
        return metric if group == "all" else f"{group}_{metric}"

    def score(self, run) -> dict[str, float]:
        """nDCG@10 and Recall@100 of ``run`` on all dev queries and on each group."""
        metrics = evaluate(self.qrels, {self.name: run}, ["ndcg@10", "recall@100"])[self.name]
        for group, qids in self.groups.items():
            sub = evaluate({q: self.qrels[q] for q in qids}, {self.name: run}, ["ndcg@10", "recall@100"])[self.name]
            metrics.update({self.metric_key(group, m): v for m, v in sub.items()})
        return metrics
