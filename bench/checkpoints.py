"""Is choosing the checkpoint on dev-unseen worth it? Every saved checkpoint of finished runs, scored on test.

``bench/recipes.py`` keeps one checkpoint per evaluation (for the two-epoch default: the end
of epoch 1 and of epoch 2) and the model the run selected on dev-unseen. This script scores
*every* checkpoint of the given runs on the test queries (all / seen / unseen documents),
beside the dev scores the trainer logged for it, and then compares the selection rules a
user could pick, over all the runs together:

* ``unseen``: the checkpoint best on dev-unseen (``--select-on unseen``, the default);
* ``all``: the checkpoint best on all dev queries (``--select-on all``);
* ``last``: no selection, the end of training (what the plain library recipe ships);
* ``first``: the first evaluated checkpoint (for two epochs: stop after one).

Nothing is trained: the runs must exist (``bench/recipes.py`` rows whose ``checkpoints/`` are
kept)::

    python bench/checkpoints.py --data ../shared/data/beir/scifact --work /tmp/recipes --runs n3-2ep n3-2ep-s7 n3-2ep-s13
    python bench/checkpoints.py --data ~/.cache/retrieval/datasets/manpages --work /tmp/recipes --runs n3-2ep n3-2ep-s7 n3-2ep-s13

Prints two markdown tables (per checkpoint; per rule, means over the runs) and writes
``WORK/<dataset>/checkpoints.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recipes import score, test_groups, test_run  # noqa: E402  (bench/ is on sys.path when run as a script)

RULES = ("unseen", "all", "last", "first")


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every saved checkpoint of a run, in training order."""
    found = [(int(p.name.split("-")[1]), p) for p in (run / "checkpoints").glob("checkpoint-*") if p.is_dir()]
    return sorted(found)


def shipped_index(model, run: Path):
    """The run's own test index when ``model`` is the checkpoint the run shipped (same document fingerprint), so the
    corpus is not encoded again for it; None otherwise."""
    from index.store import load_index, read_meta
    from retrieval.models import model_fingerprint

    folder = run / "indexes" / "tuned"
    try:
        meta = read_meta(folder)
    except (FileNotFoundError, ValueError):
        return None
    return load_index(folder) if meta.model_fingerprint == model_fingerprint(model, "document") else None


def dev_at(history: list[dict], step: int) -> dict:
    """The dev evaluation the trainer logged at ``step`` (empty when it logged none there)."""
    return next((h for h in history if h.get("step") == step), {})


def choose(rows: list[dict], rule: str) -> dict:
    """The checkpoint row a selection rule picks; ties on dev go to the earlier checkpoint, as the trainer's do."""
    if rule == "last":
        return rows[-1]
    if rule == "first":
        return rows[0]
    key = "dev_unseen_ndcg@10" if rule == "unseen" else "dev_ndcg@10"
    scored = [r for r in rows if r.get(key) is not None]
    return max(scored, key=lambda r: r[key]) if scored else rows[-1]


def main(argv: list[str] | None = None) -> int:
    from retrieval.models import load_model
    from retrieval.retriever import IndexSpec, build_or_load, search
    from retrieval.sources import resolve

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset (any --data form of the CLI)")
    p.add_argument("--work", type=Path, default=Path("/tmp/recipes"), help="bench/recipes.py's --work")
    p.add_argument("--runs", nargs="+", required=True, help="row names under WORK/<dataset>/, e.g. n3-2ep n3-2ep-s7")
    args = p.parse_args(argv)

    dataset = resolve(args.data)
    work = args.work / dataset.name
    missing = [r for r in args.runs if not (work / r / "finetune.json").is_file()]
    if missing:
        p.error(f"no finished run under {work} for: {', '.join(missing)} (run bench/recipes.py first)")
    groups = test_groups(dataset)
    base = load_model("all-MiniLM-L6-v2")
    base_index = build_or_load(base, "all-MiniLM-L6-v2", dataset.corpus, work / "base-index", IndexSpec(),
                               source=dataset.source)
    base_run = search(base_index, base, dataset.split_queries("test"), 100, "base", progress=False)
    base_row = score(groups, base_run, base_run)

    out_file = work / "checkpoints.json"
    done = json.loads(out_file.read_text())["runs"] if out_file.exists() else {}
    for run in args.runs:
        info = json.loads((work / run / "finetune.json").read_text())
        history = info.get("dev_history") or []
        rows = []
        for step, folder in checkpoints(work / run):
            cached = next((r for r in done.get(run, []) if r["step"] == step), None)
            if cached is None:
                model = load_model(str(folder))
                reuse = shipped_index(model, work / run) or base_index
                test = test_run(model, folder, dataset, reuse, base, work / "checkpoint-indexes" / run / folder.name)
                cached = {"step": step, **score(groups, base_run, test)}
            dev = dev_at(history, step)
            rows.append({**cached, "epoch": dev.get("epoch"), "dev_ndcg@10": dev.get("ndcg@10"),
                         "dev_unseen_ndcg@10": dev.get("unseen_ndcg@10"), "dev_seen_ndcg@10": dev.get("seen_ndcg@10")})
            print(f"{run} checkpoint-{step}: test all {rows[-1]['all_ndcg@10']:.4f}", flush=True)
        done[run] = rows
        out_file.write_text(json.dumps({"base": base_row, "runs": done}, indent=1))

    def f(v):
        return "-" if v is None else f"{v:.4f}"

    print(f"\n## {dataset.name}: every checkpoint on test (nDCG@10; base all {base_row['all_ndcg@10']:.4f}, "
          f"unseen {f(base_row.get('unseen_ndcg@10'))})\n")
    print("| run | step (epoch) | dev all | dev unseen | dev seen | test all (p) | test seen | test unseen (p) | picked by |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        rows = done[run]
        for r in rows:
            picked = ", ".join(rule for rule in RULES if choose(rows, rule) is r)
            unseen = f"{f(r.get('unseen_ndcg@10'))} ({r['unseen_p']:.3f})" if "unseen_p" in r else "-"
            print(f"| {run} | {r['step']} ({f(r['epoch'])[:4]}) | {f(r['dev_ndcg@10'])} | {f(r['dev_unseen_ndcg@10'])} | "
                  f"{f(r['dev_seen_ndcg@10'])} | {r['all_ndcg@10']:.4f} ({r['all_p']:.3f}) | {f(r.get('seen_ndcg@10'))} | "
                  f"{unseen} | {picked} |")
    print(f"\n## {dataset.name}: selection rules, test nDCG@10 averaged over {len(args.runs)} runs\n")
    print("| rule | test all | test seen | test unseen |")
    print("|---|---|---|---|")
    for rule in RULES:
        picks = [choose(done[run], rule) for run in args.runs]
        means = {g: sum(r[f"{g}_ndcg@10"] for r in picks) / len(picks) if all(f"{g}_ndcg@10" in r for r in picks) else None
                 for g in ("all", "seen", "unseen")}
        print(f"| {rule} | {f(means['all'])} | {f(means['seen'])} | {f(means['unseen'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
