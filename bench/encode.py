"""CPU encoding speed of each backend vs plain ``SentenceTransformer.encode``, and what it costs in nDCG@10.

Throughput: a seeded random sample of ``--max-docs`` SciFact documents (title + text,
as indexed), encoded after a short warm-up, best of ``--repeat`` runs; docs/s and the
ratio to plain ``model.encode`` (fp32 torch). Quality: min/mean cosine of each backend's
vectors to the fp32 ones on that sample, and, for the backends named in ``--ndcg``, the
nDCG@10 / Recall@100 on SciFact test (all 5,183 documents and the 300 test queries
encoded with that backend, exact search, ``retrieval.evaluate``). The fp32 row reuses
``--fp32-embeddings`` (an existing index's embeddings.npy) when given, to save an encode.
``openvino-int8`` is calibrated as ``retrieval index build`` does it: on 300 corpus documents.
Documents are encoded as an index build encodes a corpus (``retrieval.backends.bulk_context``:
``torch-bf16`` casts the weights); ``torch-bf16-autocast`` is the same model under autocast alone
(what ``torch-bf16`` did before, and what it still does for queries), timed side by side.

    nice -n 10 python bench/encode.py [--max-docs 512] [--ndcg torch-bf16 ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact")
ALL_BACKENDS = ["torch", "torch-bf16", "torch-bf16-autocast", "torch-int8", "onnx", "onnx-int8", "openvino",
                "openvino-int8"]
AUTOCAST = "torch-bf16-autocast"  # not a backend of the registry: torch-bf16 with autocast for documents too


def encode_docs(model, texts: list[str], backend: str, batch_size: int, progress: bool) -> np.ndarray:
    """Documents as an index build encodes them (``bulk_context``), or under autocast for the comparison row."""
    from retrieval.backends import bulk_context, encode_with_backend
    from retrieval.encode import encode

    if backend == AUTOCAST:
        return encode_with_backend(model, texts, None, batch_size, progress, "torch-bf16")
    with bulk_context(model, backend):
        return encode(model, texts, None, batch_size, progress)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def throughput(encode_fn, texts: list[str], repeat: int) -> tuple[float, np.ndarray]:
    encode_fn(texts[:32])
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = encode_fn(texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best, out


def ndcg(model, backend: str, dataset, doc_vectors: np.ndarray | None, batch_size: int) -> dict[str, float]:
    from retrieval.backends import encode_with_backend
    from retrieval.encode import doc_texts
    from retrieval.evaluate import evaluate
    from retrieval.retriever import run_from_hits

    ids = list(dataset.corpus)
    if doc_vectors is None:
        doc_vectors = encode_docs(model, doc_texts(dataset.corpus, ids), backend, batch_size, True)
    queries = dataset.split_queries("test")
    qids = list(queries)
    query_backend = "torch-bf16" if backend == AUTOCAST else backend
    q = unit(encode_with_backend(model, [queries[i] for i in qids], None, batch_size, False, query_backend))
    scores, rows = faiss.knn(q.astype(np.float32), unit(np.asarray(doc_vectors, dtype=np.float32)), 100,
                             faiss.METRIC_INNER_PRODUCT)
    run = run_from_hits(qids, [[ids[j] for j in r] for r in rows], scores, backend)
    return evaluate(dataset.split("test"), {backend: run}, ["ndcg@10", "recall@100"])[backend]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="BEIR dataset (default: SciFact)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or folder")
    parser.add_argument("--backends", nargs="+", default=ALL_BACKENDS, help="backends to time")
    parser.add_argument("--max-docs", type=int, default=512, help="documents timed per backend")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per backend; the best is kept")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--ndcg", nargs="*", default=[], help="backends whose nDCG@10 on the full test set is measured")
    parser.add_argument("--fp32-embeddings", default="/tmp/zs/indexes/all-MiniLM-L6-v2/embeddings.npy",
                        help="fp32 document vectors in corpus order, reused for the torch nDCG row if present")
    args = parser.parse_args()

    import torch

    from retrieval.backend_exports import BackendUnavailable, calibration_sample
    from retrieval.backends import NEEDS_CALIBRATION, load_model_with_backend
    from retrieval.encode import doc_texts
    from retrieval.models import load_model
    from retrieval.sources import resolve

    torch.set_num_threads(args.threads)
    dataset = resolve(args.data)
    texts = doc_texts(dataset.corpus)
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(args.max_docs, len(texts)), replace=False)]

    plain = load_model(args.model)
    plain_rate, reference = throughput(
        lambda t: plain.encode(t, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False), sample, args.repeat)
    print(f"{len(sample)} docs, batch {args.batch_size}, {args.threads} threads; plain SentenceTransformer.encode "
          f"{plain_rate:.1f} docs/s\n")
    print("| backend | docs/s | x plain | min cos | mean cos | nDCG@10 | Recall@100 |")
    print("|---|---|---|---|---|---|---|")
    for backend in args.backends:
        try:
            calibration = calibration_sample(texts) if backend in NEEDS_CALIBRATION else None
            model = load_model_with_backend(args.model, "torch-bf16" if backend == AUTOCAST else backend,
                                            calibration_texts=calibration)
        except BackendUnavailable as err:
            print(f"| {backend} | not available: {str(err).splitlines()[0][:150]} | | | | | |", flush=True)
            continue
        rate, vectors = throughput(
            lambda t: encode_docs(model, t, backend, args.batch_size, False), sample, args.repeat)
        cos = (unit(vectors) * unit(reference)).sum(axis=1)
        quality = ["", ""]
        if backend in args.ndcg:
            reuse = np.load(args.fp32_embeddings) if backend == "torch" and Path(args.fp32_embeddings).exists() else None
            scores = ndcg(model, backend, dataset, reuse, args.batch_size)
            quality = [f"{scores['ndcg@10']:.4f}", f"{scores['recall@100']:.4f}"]
        print(f"| {backend} | {rate:.1f} | {rate / plain_rate:.2f} | {cos.min():.5f} | {cos.mean():.5f} | "
              f"{quality[0]} | {quality[1]} |", flush=True)


if __name__ == "__main__":
    main()
