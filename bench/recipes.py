"""Fine-tuning recipes side by side on one dataset: all / seen-document / unseen-document test queries.

Every recipe trains on the same training queries (the dataset's ``train`` split minus the
dev queries held out by document, :mod:`finetune.dev_split`), from the same base model and
base index, and is scored on the same test queries, split by whether any relevant document
was a positive of the training split. Each row: nDCG@10 and Recall@100 on all / seen /
unseen test queries, the paired t-test p-value against the base model (ranx ``compare``,
"student") on each group, and wall time on this machine.

Recipes (``--recipes``, default all): each is defined, with what it tests and when it was measured, in
``bench/recipe_book.py``; the default recipe's row is ``n3-3ep``.

Document sides that change are re-encoded under bf16 autocast on CPUs with native bf16
(measured within 0.001 nDCG@10 of fp32, ``bench/encode.py``); the base index is fp32::

    python bench/recipes.py --data ../shared/data/beir/scifact --work /tmp/recipes
    python bench/recipes.py --data ~/.cache/retrieval/datasets/manpages --work /tmp/recipes

Prints a markdown table and writes ``WORK/<dataset>/recipes.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recipe_book import ALL, RECIPES  # noqa: E402  (bench/ is on sys.path when run as a script)


def autocast():
    import torch

    from finetune.train import precision_flags

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision_flags("auto")["bf16"] else contextlib.nullcontext()


def test_groups(dataset, split: str = "test") -> dict[str, dict]:
    from finetune.dev_split import label_seen

    test = dataset.split(split)
    seen, unseen = label_seen(test, dataset.split("train"))
    return {"all": test, "seen": {q: test[q] for q in seen}, "unseen": {q: test[q] for q in unseen}}


def score(groups: dict[str, dict], base_run, run) -> dict[str, float]:
    from retrieval.evaluate import compare, evaluate

    row = {}
    for group, qrels in groups.items():
        if not qrels:
            continue
        m = evaluate(qrels, {"x": run}, ["ndcg@10", "recall@100"])["x"]
        row[f"{group}_ndcg@10"], row[f"{group}_recall@100"] = m["ndcg@10"], m["recall@100"]
        if run is not base_run:
            p = compare(qrels, {"base": base_run, "x": run}, ["ndcg@10"]).to_dict()["base"]["comparisons"]["x"]["ndcg@10"]
            row[f"{group}_p"] = p
        row[f"{group}_n"] = len(qrels)
    return row


def test_run(model, model_dir: Path, dataset, base_index, base_model, index_dir: Path):
    """Search the test queries with ``model``: the base index when its document side is the base model's."""
    from retrieval.retriever import search
    from retrieval.systems import document_index

    with autocast():
        stored = document_index(model, str(model_dir), dataset.corpus, index_dir, reuse=base_index, source=dataset.source)
    return search(stored, model, dataset.split_queries("test"), 100, "x", progress=False)


def run_ours(name: str, dataset, work: Path, base_index_dir: Path, seed: int = 42) -> tuple[Path, dict]:
    from finetune.config import FinetuneConfig
    from finetune.train import finetune

    config = FinetuneConfig(test_split="", seed=seed, **RECIPES[name])
    start = time.perf_counter()
    result = finetune(dataset, config, work / row_name(name, seed), base_index=base_index_dir)
    return work / row_name(name, seed) / "model", {"seconds": time.perf_counter() - start, "interpolation": result.interpolation,
                                   "best_dev": result.best_dev, "dev": result.dev_split, "pairs_per_second": result.pairs_per_second}


def best_checkpoint(folder: Path) -> Path:
    """The checkpoint the trainer selected (its trainer_state.json names it), i.e. the tuned model before WiSE-FT."""
    states = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    best = json.loads(states[-1].read_text()).get("best_model_checkpoint")
    return Path(best) if best else states[-1].parent


def row_name(name: str, seed: int) -> str:
    """A recipe's row (and folder) name: ``full-wise``, or ``full-wise-s7`` under another --seed."""
    return name if seed == 42 else f"{name}-s{seed}"


def run_st_plain(dataset, work: Path, base_index, seed: int = 42, epochs: int = 1) -> tuple[Path, dict]:
    """The plain library recipe on the same training queries and the same mined negative."""
    from datasets import Dataset as HFDataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    from finetune.config import FinetuneConfig
    from finetune.dev_split import dev_split
    from finetune.negatives import MiningConfig, mine_hard_negatives
    from finetune.pairs import train_queries
    from finetune.train import precision_flags
    from retrieval.encode import doc_text, encode
    from retrieval.models import load_model

    config = FinetuneConfig(seed=seed)
    name = "st-plain" if epochs == 1 else f"st-plain-{epochs}ep"
    start = time.perf_counter()
    model = load_model(config.base)
    queries = train_queries(dataset, dev_split(dataset, fraction=config.dev_fraction, seed=config.seed).train)
    vectors = encode(model, queries.texts, None, 64, False, "query")
    mined = mine_hard_negatives(base_index, vectors, queries.qids, queries.qrels(),
                                MiningConfig(rank_start=config.rank_start, rank_end=config.rank_end, margin=config.margin,
                                             num_negatives=1, seed=config.seed), dataset.queries, dataset.corpus)
    rows = {"anchor": [], "positive": [], "negative": []}
    for qid, text, docs in zip(queries.qids, queries.texts, queries.positives):
        negatives = mined.negatives.get(qid)
        if negatives:
            rows["anchor"].append(text)
            rows["positive"].append(doc_text(dataset.corpus[docs[0]]))
            rows["negative"].append(doc_text(dataset.corpus[negatives[0][0]]))
    model.max_seq_length = 256
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / row_name(name, seed) / "checkpoints"), num_train_epochs=epochs, per_device_train_batch_size=32,
        learning_rate=3e-5, warmup_steps=0.1, batch_sampler="no_duplicates", save_strategy="no", report_to=[],
        seed=config.seed, use_cpu=True, **precision_flags("auto"))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=HFDataset.from_dict(rows),
                                         loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    out = work / row_name(name, seed) / "model"
    model.save(str(out))
    return out, {"seconds": time.perf_counter() - start, "pairs": len(rows["anchor"])}


def table(rows: dict[str, dict]) -> str:
    head = ("| recipe | all nDCG@10 (p) | seen nDCG@10 (p) | unseen nDCG@10 (p) | all R@100 | unseen R@100 | wall s |\n"
            "|---|---|---|---|---|---|---|")
    lines = [head]
    for name, r in rows.items():
        def cell(g):
            if f"{g}_ndcg@10" not in r:
                return "-"
            p = r.get(f"{g}_p")
            return f"{r[f'{g}_ndcg@10']:.4f}" + ("" if p is None else f" ({p:.3f})")
        lines.append(f"| {name} | {cell('all')} | {cell('seen')} | {cell('unseen')} | {r['all_recall@100']:.4f} | "
                     f"{r.get('unseen_recall@100', float('nan')):.4f} | {r.get('seconds') or 0:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load, search
    from retrieval.sources import resolve

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="dataset (any --data form of the CLI)")
    p.add_argument("--work", type=Path, default=Path("/tmp/recipes"))
    p.add_argument("--recipes", nargs="+", default=ALL, choices=ALL, metavar="ROW",
                   help="rows to run (default: all), each defined in bench/recipe_book.py: " + ", ".join(ALL))
    p.add_argument("--seed", type=int, default=42,
                   help="seed of the dev split, sampling and training; rows of another seed are named RECIPE-sSEED "
                        "(run twice to see how much a recipe moves with the seed alone)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="paired t-test between two finished recipes of --data (their models and indexes are reused)")
    p.add_argument("--show", type=Path, nargs="+", default=None,
                   help="print the tables of saved recipes.json files (one per dataset) and the default they imply")
    args = p.parse_args(argv)
    if args.show:
        print_saved(args.show)
        return 0

    dataset = resolve(args.data)
    work = args.work / dataset.name
    work.mkdir(parents=True, exist_ok=True)
    groups = test_groups(dataset)
    base = load_model("all-MiniLM-L6-v2")
    if args.compare:
        return compare_recipes(args.compare, dataset, work, base, groups)
    start = time.perf_counter()
    base_index = build_or_load(base, "all-MiniLM-L6-v2", dataset.corpus, work / "base-index", IndexSpec(), source=dataset.source)
    base_run = search(base_index, base, dataset.split_queries("test"), 100, "base", progress=False)
    results = {"base": {**score(groups, base_run, base_run), "seconds": time.perf_counter() - start}}
    out_file = work / "recipes.json"
    previous = json.loads(out_file.read_text()) if out_file.exists() else {}
    for name in args.recipes:
        try:
            results[row_name(name, args.seed)] = run_recipe(name, dataset, work, base_index, base, groups, base_run, args.seed)
        except Exception:  # one recipe's crash must not cost the others' numbers
            import traceback

            traceback.print_exc()
            continue
        previous = json.loads(out_file.read_text()) if out_file.exists() else {}  # another run may have added rows
        previous.update(results)
        out_file.write_text(json.dumps(previous, indent=1, default=str))
        print(f"\n{row_name(name, args.seed)}: {json.dumps(results[row_name(name, args.seed)], default=str)}", flush=True)
    print(f"\n## {dataset.name}\n")
    print(table({k: v for k, v in previous.items()}))
    return 0


def print_saved(paths: list[Path]) -> None:
    """The tables of saved recipes.json files and the default they imply (``--show A.json B.json``).

    The rule (issue 13): the best mean overall test nDCG@10 over the datasets, among the
    recipes whose unseen-document nDCG@10 is not significantly below base (p < 0.05) on any.
    """
    results = {p.parent.name: json.loads(p.read_text()) for p in paths}
    for name, rows in results.items():
        print(f"\n## {name}\n\n{table(rows)}")
    common = [r for r in next(iter(results.values())) if r != "base" and all(r in rows for rows in results.values())]
    verdict = {}
    for recipe in common:
        harmful = [d for d, rows in results.items() if rows[recipe].get("unseen_ndcg@10", 1) < rows["base"].get("unseen_ndcg@10", 0)
                   and rows[recipe].get("unseen_p", 1) < 0.05]
        mean_all = sum(rows[recipe]["all_ndcg@10"] for rows in results.values()) / len(results)
        verdict[recipe] = (mean_all, harmful)
        print(f"{recipe}: mean all nDCG@10 {mean_all:.4f}; unseen significantly below base on: {', '.join(harmful) or 'none'}")
    allowed = {r: v for r, v in verdict.items() if not v[1]}
    if allowed:
        print(f"\ndefault by the rule: {max(allowed, key=lambda r: allowed[r][0])}")
    for name, rows in results.items():
        summary = seed_summary(rows)
        if summary:
            print(f"\n## {name}: recipes over seeds (mean, and each seed's all / unseen nDCG@10)\n\n{summary}")


def seed_summary(rows: dict[str, dict]) -> str:
    """Rows ``RECIPE`` (seed 42) and ``RECIPE-sN`` grouped per recipe, for recipes run at two seeds or more.

    A single seed's paired test over queries holds the trained model fixed; how far a recipe
    moves with the seed (dev split, batches, initialisation of the run) is only seen here.
    """
    groups: dict[str, dict[int, dict]] = {}
    for row, result in rows.items():
        match = re.fullmatch(r"(.+?)-s(\d+)", row)
        recipe, seed = (match.group(1), int(match.group(2))) if match else (row, 42)
        groups.setdefault(recipe, {})[seed] = result
    lines = ["| recipe | seeds | mean all | mean unseen | per seed: all / unseen |", "|---|---|---|---|---|"]
    for recipe, by_seed in groups.items():
        if len(by_seed) < 2:
            continue
        seeds = sorted(by_seed)
        means = {g: sum(by_seed[x].get(f"{g}_ndcg@10", float("nan")) for x in seeds) / len(seeds) for g in ("all", "unseen")}
        each = "; ".join(f"{x}: {by_seed[x]['all_ndcg@10']:.4f} / {by_seed[x].get('unseen_ndcg@10', float('nan')):.4f}"
                         for x in seeds)
        lines.append(f"| {recipe} | {len(seeds)} | {means['all']:.4f} | {means['unseen']:.4f} | {each} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def model_folder(name: str, work: Path) -> Path:
    """A finished row's model: ``full`` and ``full-sN`` are the selected checkpoint of the matching full-wise run,
    ``RECIPE-a1`` (``RECIPE-a1-sN``) that of ``RECIPE``'s run: the tuned model before WiSE-FT."""
    if re.fullmatch(r"full(-s\d+)?", name):  # not full-siglip
        return best_checkpoint(work / name.replace("full", "full-wise", 1) / "checkpoints")
    if "-a1" in name:
        return best_checkpoint(work / name.replace("-a1", "", 1) / "checkpoints")
    return work / name / "model"


def compare_recipes(names: list[str], dataset, work: Path, base, groups) -> int:
    """Paired t-test (ranx) between two finished recipes on all / seen / unseen test queries."""
    from retrieval.evaluate import compare
    from retrieval.models import load_model
    from retrieval.retriever import load_index

    base_index = load_index(work / "base-index")
    runs = [test_run(load_model(str(model_folder(n, work))), model_folder(n, work), dataset, base_index, base,
                     work / n / "indexes" / "tuned") for n in names]
    for group, qrels in groups.items():
        if qrels:
            report = compare(qrels, {names[0]: runs[0], names[1]: runs[1]}, ["ndcg@10", "recall@100"]).to_dict()
            a = report[names[0]]
            print(f"{group} ({len(qrels)}): {names[0]} {a['scores']['ndcg@10']:.4f} vs {names[1]} "
                  f"{report[names[1]]['scores']['ndcg@10']:.4f} nDCG@10, p={a['comparisons'][names[1]]['ndcg@10']:.3f}; "
                  f"R@100 p={a['comparisons'][names[1]]['recall@100']:.3f}")
    return 0


def run_recipe(name: str, dataset, work: Path, base_index, base, groups, base_run, seed: int = 42) -> dict:
    """Train (or reuse) one recipe and score its test run against the base run."""
    from retrieval.models import load_model

    row = row_name(name, seed)
    if name.startswith("st-plain"):
        model_dir, info = run_st_plain(dataset, work, base_index, seed, epochs=2 if name == "st-plain-2ep" else 1)
    elif name == "full" or name.endswith("-a1"):  # a WiSE-FT recipe's selected checkpoint: one training, two rows
        trained = "full-wise" if name == "full" else name.removesuffix("-a1")
        if not (work / row_name(trained, seed) / "model").exists():
            run_ours(trained, dataset, work, work / "base-index", seed)
        model_dir, info = model_folder(row, work), {"seconds": None, "note": f"{trained} before WiSE-FT"}
    else:
        model_dir, info = run_ours(name, dataset, work, work / "base-index", seed)
    model = load_model(str(model_dir))
    t = time.perf_counter()
    run = test_run(model, model_dir, dataset, base_index, base, work / row / "indexes" / "tuned")
    info["test_seconds"] = time.perf_counter() - t
    return {**score(groups, base_run, run), **info}


if __name__ == "__main__":
    sys.exit(main())
