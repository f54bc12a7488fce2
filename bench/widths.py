"""Does Matryoshka training pay at the widths it was trained for? Finished recipes scored at truncated widths.

A model trained with ``--matryoshka-dims 384,256,128,64`` is meant to be served at a smaller width
(``retrieval index build --dim 128``): the first ``d`` coordinates of every vector, renormalised. The
question a user has is not how the Matryoshka model does at full width (``bench/recipes.py`` has that
row) but how it does at 128 against the model they would otherwise have trained, cut to 128 too. This
script answers it for finished rows of ``bench/recipes.py``: each row's saved test index (exact, full
width) gives its document vectors, its model encodes the test queries, and at every width both sides
are truncated and renormalised (:func:`index.build.truncate`, what ``--dim`` does), searched exactly,
and scored with ranx on all / seen / unseen test queries, with a paired t-test of each row against the
first at the same width. Nothing is trained and no corpus is encoded::

    python bench/widths.py --data ../shared/data/beir/scifact --work /tmp/recipes --runs n3-3ep n3-3ep-matryoshka
    python bench/widths.py --data ~/.cache/retrieval/datasets/manpages --work /tmp/recipes --runs n3-3ep n3-3ep-matryoshka

Prints one markdown table and writes ``WORK/<dataset>/widths-<run>+<run>....json``, named for the rows
compared, so the seed-42 and seed-7 comparisons sit side by side instead of one overwriting the other.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recipes import model_folder, test_groups  # noqa: E402  (bench/ is on sys.path when run as a script)

WIDTHS = (384, 256, 128, 64)


def row_vectors(name: str, work: Path, queries: dict[str, str]):
    """A finished row's document vectors (from its saved exact test index), ids, and its test query vectors."""
    from index.store import load_index
    from retrieval.encode import encode
    from retrieval.models import load_model
    from retrieval.retriever import check_model, cap_queries

    stored = load_index(work / name / "indexes" / "tuned")
    docs = stored.vectors()
    if docs is None:
        raise SystemExit(f"{work / name / 'indexes' / 'tuned'}: not an exact index with its vectors; rerun the row")
    model = load_model(str(model_folder(name, work)))
    check_model(stored, model)  # the index was built by this row's model
    qids = list(queries)
    # fp32, as bench/recipes.py's test rows encode queries (so the 384 row reproduces them)
    vectors = encode(model, cap_queries([queries[q] for q in qids]), stored.meta.query_prompt, 64, False, role="query")
    return docs, stored.meta.doc_ids, vectors, qids


def main(argv: list[str] | None = None) -> int:
    from retrieval.evaluate import compare
    from retrieval.sources import resolve
    from retrieval.widths import truncated_run

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="dataset (any --data form of the CLI)")
    p.add_argument("--work", type=Path, default=Path("/tmp/recipes"))
    p.add_argument("--runs", nargs="+", required=True,
                   help="finished bench/recipes.py rows; every other row is compared with the first")
    p.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    args = p.parse_args(argv)

    dataset = resolve(args.data)
    work = args.work / dataset.name
    groups = {g: q for g, q in test_groups(dataset).items() if q}
    queries = dataset.split_queries("test")
    vectors = {name: row_vectors(name, work, queries) for name in args.runs}
    first = args.runs[0]
    results: dict[str, dict] = {}
    for dim in sorted(set(args.widths), reverse=True):
        runs = {name: truncated_run(*vectors[name], dim, name=name) for name in args.runs}
        for group, qrels in groups.items():
            report = compare(qrels, runs, ["ndcg@10", "recall@100"]).to_dict()
            for name in args.runs:
                cell = results.setdefault(name, {}).setdefault(str(dim), {})
                cell[f"{group}_ndcg@10"] = report[name]["scores"]["ndcg@10"]
                cell[f"{group}_recall@100"] = report[name]["scores"]["recall@100"]
                if name != first:
                    cell[f"{group}_p"] = report[first]["comparisons"][name]["ndcg@10"]
        n_docs = len(vectors[first][1])
        for name in args.runs:
            results[name][str(dim)]["index_mib"] = n_docs * dim * 4 / 2**20
    output = output_path(work, args.runs)
    output.write_text(json.dumps(results, indent=1))
    print(f"\n## {dataset.name}: nDCG@10 at each width (p: paired t-test against {first} at the same width)\n")
    print(table(results, args.runs, list(groups)))
    print(f"\nwritten: {output}")
    return 0


def output_path(work: Path, runs: list[str]) -> Path:
    """Where one comparison's results go: named for its rows, in order (the first is the reference)."""
    return work / ("widths-" + "+".join(runs) + ".json")


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def table(results: dict[str, dict], names: list[str], groups: list[str]) -> str:
    header = ["width", "flat index", "row"] + [f"{g} nDCG@10" for g in groups] + ["all R@100"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    dims = sorted({int(d) for r in results.values() for d in r}, reverse=True)
    for dim in dims:
        for name in names:
            cell = results[name][str(dim)]
            values = [f"{cell[f'{g}_ndcg@10']:.4f}" + (f" ({p_text(cell[f'{g}_p'])})" if f"{g}_p" in cell else "")
                      for g in groups]
            lines.append(f"| {dim} | {cell['index_mib']:.1f} MiB | {name} | " + " | ".join(values)
                         + f" | {cell['all_recall@100']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
