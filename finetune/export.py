"""Save the tuned model as a sentence-transformers folder, with a model card that says how it was made."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.atomic import atomic_dir, write_text

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def query_side_model(query_model: SentenceTransformer, base_model: SentenceTransformer) -> SentenceTransformer:
    """An asymmetric model: the tuned modules embed queries, the base model's embed documents.

    ``encode_query``/``encode_document`` pick the route; the document route is the base
    model unchanged, so the base model's index stays valid for the tuned model.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Router

    router = Router.for_query_document(query_modules=list(query_model), document_modules=list(base_model))
    model = SentenceTransformer(modules=[router], device=str(base_model.device))
    model.max_seq_length = base_model.max_seq_length
    return model


def save_model(model: SentenceTransformer, path: str | Path) -> None:
    """Write the model folder atomically (a crash leaves the previous model, or none)."""
    with atomic_dir(path) as tmp:
        model.save(str(tmp))


def write_model_card(path: str | Path, config: Any, dataset: Any, result: Any) -> None:
    """Replace the folder's README.md with a card naming base model, data, loss, settings and metrics."""
    settings = dataclasses.asdict(config)
    loss = ("FrozenCorpusInfoNCE: InfoNCE of each query against every corpus document, document encoder frozen"
            if config.mode == "query" else "InfoNCE with in-batch and mined hard negatives, known positives masked")
    best = result.best_dev or {}
    lines = [
        "---", "library_name: sentence-transformers", f"base_model: {config.base}", "tags: [sentence-transformers, retrieval, contrastive]", "---",
        "", f"# {Path(path).name}: {config.base} fine-tuned on {dataset.name}", "",
        f"- Base model: `{config.base}`",
        f"- Data: `{dataset.source}` ({len(dataset.corpus)} documents); trained on split `{config.train_split}` "
        f"({result.mining['queries']} queries), dev: {result.dev_split}",
        f"- Mode: `{config.mode}`; loss: {loss}; temperature {config.temperature}",
        f"- Mining: ranks [{config.rank_start}, {config.rank_end}), margin {config.margin}: "
        f"{result.mining['suspects']} suspected false negatives, {result.mining['starved']} queries with none left",
        f"- Best dev nDCG@10: {best.get('ndcg@10', float('nan')):.4f} on all dev queries, "
        f"{best.get('unseen_ndcg@10', float('nan')):.4f} on dev queries of unseen documents "
        f"(epoch {best.get('epoch', '?')}, selected on `{result.select}`)",
        *([f"- Weight interpolation (WiSE-FT): {1 - result.interpolation['alpha']:.2f} x base + "
           f"{result.interpolation['alpha']:.2f} x tuned"] if result.interpolation else []), "",
    ]
    if config.mode == "query":
        lines += ["Queries and documents go through different routes: use `model.encode_query(...)` for queries and",
                  "`model.encode_document(...)` for documents (the document route is the base model, unchanged).", ""]
    if result.test_metrics:
        lines += [f"## Test split `{config.test_split}`", "", "| model | " + " | ".join(next(iter(result.test_metrics.values()))) + " |",
                  "|---|" + "---:|" * len(next(iter(result.test_metrics.values())))]
        for name, scores in result.test_metrics.items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in scores.values()) + " |")
        lines.append("")
    lines += ["## Settings", "", "```json", json.dumps(settings, indent=2), "```", ""]
    write_text(Path(path) / "README.md", "\n".join(lines))
