"""What differs between the training modes: data rows, loss, dev evaluator, export and test evaluation.

``SETUPS[mode](...)`` builds one; :func:`finetune.train.finetune` runs it through the trainer.

* ``query``: the query encoder learns against the frozen base document embeddings
  (:class:`~finetune.losses.frozen_corpus.FrozenCorpusInfoNCE`); exported as a
  sentence-transformers ``Router`` whose document route *is* the base model, so the
  base index serves the tuned model and nothing is re-encoded.
* ``full``: one encoder learns from in-batch and mined hard negatives
  (:class:`~finetune.losses.info_nce.InfoNCE`, or its GradCache twin; ``--loss`` picks NCE,
  SigLIP or a triplet loss instead, see :mod:`finetune.losses`); the corpus is re-encoded for
  the test evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from finetune.config import FinetuneConfig
from finetune.dev_split import DevSplit
from finetune.evaluator import DevEvaluator
from finetune.pairs import TrainQueries, epoch_rows
from retrieval.data import Dataset

logger = logging.getLogger(__name__)


class _Setup:
    rows_per_epoch: int
    batch_sampler = "batch_sampler"
    callbacks: list = []  # trainer callbacks the loss needs

    def __init__(self, dataset: Dataset, config: FinetuneConfig, queries: TrainQueries, mined, stored,
                 documents: np.ndarray, split: DevSplit, base) -> None:
        import copy

        from retrieval.models import forget_fingerprints

        dev_qrels = split.dev
        self.dev_groups = split.groups()
        self.config, self.stored, self.queries = config, stored, queries
        self.base = base  # the frozen starting point; the trainer gets a copy
        self.model = copy.deepcopy(base)
        forget_fingerprints(self.model)  # its weights are about to change
        from finetune.dropout import set_attention_dropout, set_hidden_dropout

        if not set_attention_dropout(self.model, config.attention_dropout):  # the copy only: base stays as loaded
            logger.info("no attention dropout found in the model: --attention-dropout has no effect")
        if config.hidden_dropout >= 0 and not set_hidden_dropout(self.model, config.hidden_dropout):
            logger.info("no hidden-state dropout found in the model: --hidden-dropout has no effect")
        if config.lora_rank:
            from finetune.lora import add_lora

            trainable = add_lora(self.model, config.lora_rank, config.lora_alpha or 2.0 * config.lora_rank)
            logger.info("LoRA rank %d: %d trainable parameters", config.lora_rank, trainable)
        self.max_seq_length = self.model.max_seq_length
        self.doc_index = {d: i for i, d in enumerate(stored.meta.doc_ids)}
        self.positives = {i: {self.doc_index[d] for d in docs} for i, docs in enumerate(queries.positives)}
        self.rows = epoch_rows(queries, config.epochs, config.seed)
        self.rows_per_epoch = len(queries)
        self.dev_queries = {q: dataset.queries[q] for q in dev_qrels if q in dataset.queries}
        self.dev_qrels = dev_qrels

    def merge_lora(self) -> None:
        """Replace the adapted model by a plain one with the LoRA updates merged in (before interpolation and export)."""
        if self.config.lora_rank:
            from finetune.lora import merged

            self.model = merged(self.model, self.base)

    def _evaluator(self, doc_ids: list[str], **kwargs) -> DevEvaluator:
        from finetune.config import precision_flags

        return DevEvaluator(self.dev_queries, self.dev_qrels, doc_ids, batch_size=self.config.batch_size_encode,
                            groups=self.dev_groups, select=self.config.select_on,
                            bf16=precision_flags(self.config.precision)["bf16"], **kwargs)

    def evaluate_test(self, model, dataset: Dataset, split: str, out: Path) -> dict[str, dict[str, float]]:
        """Base vs tuned on ``split``, written into ``out`` as a run directory (:mod:`retrieval.systems`)."""
        from retrieval.retriever import IndexSpec
        from retrieval.systems import document_index, evaluate_systems

        # encoded as the base index was (bf16 weights where the hardware has native bf16), so the two compare like for like
        spec = IndexSpec(batch_size=self.config.batch_size_encode, backend=self.stored.meta.backend)
        tuned_index = document_index(model, str(out / "model"), dataset.corpus, out / "indexes" / "tuned", spec,
                                     reuse=self.stored, source=dataset.source, progress=False)
        systems = {"base": (self.base, self.stored), "tuned": (model, tuned_index)}
        return evaluate_systems(out, systems, dataset.split_queries(split), dataset.split(split))["metrics"]


class QuerySideSetup(_Setup):
    def __init__(self, dataset, config, queries, mined, stored, documents, split, base) -> None:
        import torch
        from datasets import Dataset as HFDataset

        from finetune.losses.frozen_corpus import FrozenCorpusInfoNCE

        super().__init__(dataset, config, queries, mined, stored, documents, split, base)
        self.model.max_seq_length = min(config.query_max_length, self.max_seq_length)
        self.train_dataset = HFDataset.from_dict({
            "query": [queries.texts[i] for i, _ in self.rows],
            "label": [[i, self.doc_index[d]] for i, d in self.rows],
        })
        position = {q: i for i, q in enumerate(queries.qids)}
        masked: dict[int, set[int]] = {}
        for suspect in mined.suspects:
            masked.setdefault(position[suspect["query_id"]], set()).add(self.doc_index[suspect["doc_id"]])
        documents = torch.from_numpy(np.array(documents, dtype=np.float32))
        generator = torch.Generator().manual_seed(config.seed) if config.corpus_negatives else None
        self.loss = FrozenCorpusInfoNCE(self.model, documents, self.positives, masked, config.temperature,
                                        num_negatives=config.corpus_negatives or None, generator=generator)
        if generator is not None:  # the draw resumes with the run (a function of seed and step)
            from finetune.losses.frozen_corpus import ReseedEachStep

            self.callbacks = [ReseedEachStep(generator, config.seed)]
        self.evaluator = self._evaluator(stored.meta.doc_ids, documents=documents.numpy())

    def export(self, path: Path):
        from finetune.export import query_side_model, save_model

        self.model.max_seq_length = self.max_seq_length
        tuned = query_side_model(self.model, self.base)
        save_model(tuned, path)
        return tuned


class FullSetup(_Setup):
    batch_sampler = "no_duplicates"  # a text twice in one batch would be its own false negative

    def __init__(self, dataset, config, queries, mined, stored, documents, split, base) -> None:
        from datasets import Dataset as HFDataset

        from retrieval.encode import doc_text

        super().__init__(dataset, config, queries, mined, stored, documents, split, base)
        self.model.max_seq_length = min(config.doc_max_length, self.max_seq_length)
        corpus = dataset.corpus
        with_negatives, in_batch_only = [], []
        for i, positive in self.rows:
            negatives = [d for d, _ in mined.negatives.get(queries.qids[i], [])][: config.num_negatives]
            row = {"query": queries.texts[i], "positive": doc_text(corpus[positive])}
            if len(negatives) == config.num_negatives and negatives:
                row.update({f"negative_{n + 1}": doc_text(corpus[d]) for n, d in enumerate(negatives)})
                row["label"] = [i, self.doc_index[positive], *(self.doc_index[d] for d in negatives)]
                with_negatives.append(row)
            elif config.starved == "in-batch":  # starved by the false-negative filter: in-batch negatives alone
                row["label"] = [i, self.doc_index[positive]]
                in_batch_only.append(row)
        if not with_negatives and not in_batch_only:
            from retrieval.errors import UsageError

            raise UsageError("--starved drop left no training query: no query kept a mined negative")
        self.rows_per_epoch = (len(with_negatives) + len(in_batch_only)) // config.epochs
        parts = {name: HFDataset.from_list(rows) for name, rows in (("mined", with_negatives), ("in_batch", in_batch_only)) if rows}
        self.train_dataset = parts if len(parts) > 1 else next(iter(parts.values()))
        self.loss = self._loss(config)
        pool = self._dev_pool(split.dev, documents, config)
        self.evaluator = self._evaluator(pool, doc_texts=[doc_text(corpus[d]) for d in pool])

    def _loss(self, config: FinetuneConfig):
        loss = self._base_loss(config)
        dims = config.parsed_matryoshka_dims()
        if not dims:
            return loss
        from finetune.losses.matryoshka import matryoshka_loss

        return matryoshka_loss(self.model, loss, dims)

    def _base_loss(self, config: FinetuneConfig):
        if config.loss == "nce":
            from finetune.losses.nce import NCE

            return NCE(self.model, temperature=config.temperature, positives=self.positives,
                       fit_bias=config.nce_bias == "fit")
        if config.loss == "siglip":
            from finetune.losses.siglip import SigLIP

            if config.siglip_init == "fit":
                return SigLIP(self.model, init_scale=1 / config.temperature, init_bias=None, positives=self.positives)
            return SigLIP(self.model, positives=self.positives)
        if config.loss == "triplet":
            from finetune.losses.triplet import Triplet

            return Triplet(self.model, margin=config.triplet_margin, positives=self.positives)
        kwargs = dict(temperature=config.temperature, learnable_temperature=config.learnable_temperature,
                      symmetric=config.symmetric, positives=self.positives)
        if config.gradient_cache:
            from finetune.losses.cached_info_nce import CachedInfoNCE

            return CachedInfoNCE(self.model, mini_batch_size=config.mini_batch_size, **kwargs)
        if config.queue_size:
            import os

            from finetune.losses.queue import QueueInfoNCE
            from retrieval.errors import UsageError

            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UsageError("--queue-size is single-process only (not implemented under torchrun)")
            return QueueInfoNCE(self.model, queue_size=config.queue_size, momentum=config.momentum, **kwargs)
        from finetune.losses.info_nce import InfoNCE

        return InfoNCE(self.model, **kwargs)

    def _dev_pool(self, dev_qrels: dict, documents: np.ndarray, config: FinetuneConfig, depth: int = 10) -> list[str]:
        """Dev positives plus the base model's top ``depth`` per dev query (see finetune.evaluator)."""
        from retrieval.encode import encode

        qids = list(self.dev_queries)
        vectors = encode(self.model, [self.dev_queries[q] for q in qids], None, config.batch_size_encode, False, "query")
        ids, _ = self.stored.search(vectors, depth)
        pool = {d for row in ids for d in row} | {d for q in qids for d in dev_qrels[q] if d in self.doc_index}
        return sorted(pool, key=self.doc_index.get)

    def export(self, path: Path):
        from finetune.export import save_model

        self.model.max_seq_length = self.max_seq_length
        save_model(self.model, path)
        if self.config.parsed_matryoshka_dims():  # the widths `retrieval index build --dim` may truncate to
            from finetune.losses.matryoshka import write_record
            from retrieval.models import embedding_dim

            write_record(path, self.config.parsed_matryoshka_dims(), embedding_dim(self.model))
        return self.model


SETUPS = {"query": QuerySideSetup, "full": FullSetup}
