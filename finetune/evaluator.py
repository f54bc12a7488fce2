"""Dev-set nDCG@10 during training, computed by the same ranx code as ``retrieval eval``.

In mode ``query`` the documents are the frozen base embeddings, so a dev
evaluation costs only the dev queries' encoding. In mode ``full`` documents
change with the model; re-encoding the whole corpus at every evaluation would
dominate training, so documents are a fixed *pool*: every dev positive plus the
base model's top ``pool_depth`` per dev query. The pool ranks checkpoints
against each other; the test figure always comes from the whole corpus.
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
    ) -> None:
        """Give ``documents`` (frozen, normalised) for mode query, or ``doc_texts`` to re-encode (mode full)."""
        super().__init__()
        if (documents is None) == (doc_texts is None):
            raise ValueError("give exactly one of documents (frozen) or doc_texts (re-encoded)")
        self.queries, self.qrels, self.doc_ids = queries, qrels, doc_ids
        self.documents = None if documents is None else torch.from_numpy(np.ascontiguousarray(documents, dtype=np.float32))
        self.doc_texts, self.k, self.batch_size, self.name = doc_texts, k, batch_size, name
        self.primary_metric = "ndcg@10"
        self.history: list[dict[str, float]] = []
        self.epoch_scale = 1.0  # the trainer runs all epochs as one pass (finetune.pairs.epoch_rows)

    def __call__(self, model, output_path: str | None = None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        qids = list(self.queries)
        q = model.encode_query([self.queries[x] for x in qids], batch_size=self.batch_size, convert_to_tensor=True,
                               show_progress_bar=False).float().cpu()
        if self.documents is not None:
            docs = self.documents
        else:
            docs = model.encode_document(self.doc_texts, batch_size=self.batch_size, convert_to_tensor=True,
                                         show_progress_bar=False).float().cpu()
        scores = F.normalize(q, dim=-1) @ F.normalize(docs, dim=-1).T
        top, idx = scores.topk(min(self.k, scores.size(1)), dim=1)
        run = run_from_hits(qids, [[self.doc_ids[j] for j in row] for row in idx.tolist()], top.numpy(), self.name)
        metrics = evaluate(self.qrels, {self.name: run}, ["ndcg@10", "recall@100"])[self.name]
        self.history.append({"epoch": round(float(epoch) * self.epoch_scale, 3), "step": int(steps), **metrics})
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics
