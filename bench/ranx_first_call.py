"""What a new process pays before its first ranx score, and how much of it the background warm-up hides.

Each row runs in a fresh Python process (numba's on-disk cache warm from earlier runs):

* ``cold``: ``from retrieval.evaluate import evaluate``, then score a 300-query run at once;
* ``warmed``: the same, but :func:`retrieval.evaluate.warm_up` was started at process start and
  the process did ``--work`` seconds of other work first (as a job encodes or trains), so the
  first score finds ranx compiled.

    python bench/ranx_first_call.py [--work 15] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from retrieval.evaluate import evaluate, id_widths, warm_up
imported = time.perf_counter() - t0
qids = [f"query-{i}" for i in range(300)]
docs = [f"document-{j}" for j in range(1000)]
if sys.argv[1] == "warmed":
    warm_up(**id_widths(qids, docs))
    end = time.perf_counter() + float(sys.argv[2])
    x = 0
    while time.perf_counter() < end:  # other work, GIL released most of the time as torch does
        time.sleep(0.01)
import random
random.seed(0)
qrels = {qids[i]: {docs[i]: 1} for i in range(300)}
run = {qids[i]: {docs[j]: random.random() for j in random.sample(range(1000), 100)} for i in range(300)}
from ranx import Run
t1 = time.perf_counter()
evaluate(qrels, {"r": Run.from_dict(run, name="r")})  # building the run (as search does) and scoring it
print(json.dumps({"import": imported, "first_score": time.perf_counter() - t1}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=float, default=15.0, help="seconds of other work before the first score (warmed)")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rows = {}
    for mode in ("cold", "warmed"):
        runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, mode, str(args.work)], capture_output=True,
                                          text=True, check=True).stdout.strip().splitlines()[-1]) for _ in range(args.repeat)]
        rows[mode] = {k: statistics.median(r[k] for r in runs) for k in ("import", "first_score")}
    print("| process | import retrieval.evaluate s | first evaluate() s (median of %d) |" % args.repeat)
    print("|---|---|---|")
    for mode, r in rows.items():
        print(f"| {mode} | {r['import']:.2f} | {r['first_score']:.2f} |")
    print(f"\nratio cold / warmed first call: {rows['cold']['first_score'] / max(rows['warmed']['first_score'], 1e-3):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
