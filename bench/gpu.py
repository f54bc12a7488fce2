"""The GPU path measured in one go: encoding docs/s, training pairs/s (full and query mode), faiss on GPU, the main job.

Run by ``bench/gpu.sh`` on a GPU machine (bf16 autocast on CUDA); without CUDA it runs the
same steps on the CPU in float32 and says so in every row (the fallback path, so the script
itself is tested on machines without a GPU). Prints one markdown table and writes it, with
the raw numbers, to ``--out`` (``gpu.md``, ``gpu.json``).

    python bench/gpu.py --data DATA --model MODEL --out OUT [--batch-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def encoding(model, texts: list[str], device: str, bf16: bool, batch_size: int) -> dict:
    """docs/s under bf16 autocast (fp32 is timed by the base index build itself: the corpus is encoded once in fp32)."""
    import torch

    rows = {}
    for name, ctx in (("bf16", torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else None),):
        if ctx is None:
            continue
        with ctx:
            model.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model.encode(texts, batch_size=batch_size, show_progress_bar=False)
            if device == "cuda":
                torch.cuda.synchronize()
        rows[name] = len(texts) / (time.perf_counter() - start)
    return rows


def training(dataset, model_path: str, mode: str, precision: str, batch_size: int, out: Path) -> dict:
    from finetune.config import FinetuneConfig
    from finetune.train import finetune

    epochs = 1 if mode == "full" else 3
    config = FinetuneConfig(base=model_path, mode=mode, epochs=epochs, batch_size=batch_size, precision=precision,
                            interpolate="none", test_split="", learning_rate=3e-5 if mode == "full" else 4e-5)
    start = time.perf_counter()
    result = finetune(dataset, config, out / f"train-{mode}", base_index=out / "base-index")
    return {"pairs_per_second": result.pairs_per_second, "seconds": time.perf_counter() - start,
            "train_seconds": result.seconds.get("train")}


def faiss_search(vectors, queries, k: int = 100) -> dict:
    import faiss
    import numpy as np

    row = {"gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}
    cpu = faiss.IndexFlatIP(vectors.shape[1])
    cpu.add(np.asarray(vectors, dtype=np.float32))
    start = time.perf_counter()
    cpu.search(np.asarray(queries, dtype=np.float32), k)
    row["cpu_qps"] = len(queries) / (time.perf_counter() - start)
    if row["gpus"]:
        gpu = faiss.index_cpu_to_all_gpus(cpu)
        gpu.search(np.asarray(queries[:8], dtype=np.float32), k)
        start = time.perf_counter()
        gpu.search(np.asarray(queries, dtype=np.float32), k)
        row["gpu_qps"] = len(queries) / (time.perf_counter() - start)
    return row


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset (any --data form), e.g. a SciFact folder")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="base model name or folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=256, help="training batch (per device) and encoding batch")
    p.add_argument("--skip-job", action="store_true", help="skip the end-to-end main job")
    args = p.parse_args(argv)

    from retrieval.encode import doc_texts
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load
    from retrieval.sources import resolve

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    precision = "bf16" if bf16 else "fp32"
    where = torch.cuda.get_device_name(0) if cuda else "CPU fallback: no CUDA device, float32"
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = resolve(args.data)
    model = load_model(args.model, device=device)
    texts = doc_texts(dataset.corpus)
    numbers: dict = {"device": where, "torch": torch.__version__, "precision": precision, "documents": len(texts)}

    start = time.perf_counter()  # the fp32 encoding rate is the base index build's (encoding dominates it)
    stored = build_or_load(model, args.model, dataset.corpus, args.out / "base-index", IndexSpec(batch_size=args.batch_size),
                           progress=False, source=dataset.source)
    numbers["encode_docs_per_s"] = {"fp32": len(texts) / (time.perf_counter() - start),
                                    **encoding(model, texts, device, bf16, args.batch_size)}
    queries = list(dataset.split_queries("test").values())
    numbers["faiss"] = faiss_search(stored.vectors(), model.encode(queries, batch_size=args.batch_size,
                                                                   normalize_embeddings=True))
    numbers["train"] = {mode: training(dataset, args.model, mode, precision, args.batch_size, args.out)
                        for mode in ("full", "query")}
    if not args.skip_job:
        from finetune.config import FinetuneConfig
        from jobs.tune import TuneOptions, tune

        start = time.perf_counter()
        result = tune(TuneOptions(data=args.data, out=args.out / "job",
                                  config=FinetuneConfig(base=args.model, precision=precision), geometry=True))
        numbers["job"] = {"seconds": time.perf_counter() - start, "stages": result["seconds"],
                          "base_ndcg@10": result["metrics"]["base"]["ndcg@10"],
                          "tuned_ndcg@10": result["metrics"]["tuned"]["ndcg@10"]}

    enc, tr, fs = numbers["encode_docs_per_s"], numbers["train"], numbers["faiss"]
    lines = [f"## GPU bench: {where} (torch {torch.__version__}, {precision})", "",
             "| measure | value |", "|---|---|",
             f"| encode docs/s, fp32 ({len(texts)} docs, batch {args.batch_size}) | {enc['fp32']:.0f} |"]
    if "bf16" in enc:
        lines.append(f"| encode docs/s, bf16 autocast | {enc['bf16']:.0f} ({enc['bf16'] / enc['fp32']:.1f}x) |")
    lines += [f"| training pairs/s, full mode ({precision}, batch {args.batch_size}) | {tr['full']['pairs_per_second']:.0f} "
              f"(target >= 1000 on a GPU) |",
              f"| training pairs/s, query mode ({precision}) | {tr['query']['pairs_per_second']:.0f} |",
              f"| faiss flat search q/s, CPU | {fs['cpu_qps']:.0f} |",
              f"| faiss flat search q/s, GPU | {fs['gpu_qps']:.0f} |" if fs.get("gpu_qps") else
              "| faiss flat search on GPU | not run: this faiss build has no GPU support |"]
    if "job" in numbers:
        job = numbers["job"]
        lines.append(f"| main job end to end, s | {job['seconds']:.0f} (nDCG@10 {job['base_ndcg@10']:.4f} -> "
                     f"{job['tuned_ndcg@10']:.4f}) |")
        lines += [f"| job stage: {stage}, s | {s:.1f} |" for stage, s in job["stages"].items()]
    table = "\n".join(lines)
    print("\n" + table)
    (args.out / "gpu.md").write_text(table + "\n")
    (args.out / "gpu.json").write_text(json.dumps(numbers, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
