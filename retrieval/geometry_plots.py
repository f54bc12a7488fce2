"""Pictures and a markdown section from :mod:`retrieval.geometry` results (``{model: measures}``).

Everything here is drawn from the JSON-ready results alone, so a saved
``geometry.json`` can be re-plotted without the models. matplotlib runs on the
Agg backend (PNG files, no display) and is imported only when a plot is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from index.atomic import atomic_path

PLOTS = {  # file name -> what it shows (the markdown report uses these captions)
    "similarity_hist.png": "Cosine similarity of document pairs from the same class vs different classes",
    "projection.png": "Documents in 2-D, the largest classes coloured",
    "probe_noise.png": "Linear-probe accuracy as Gaussian noise is added to the embeddings",
    "infonce_k.png": "InfoNCE loss and the mutual-information bound as the number of negatives K grows",
    "summary.png": "Anisotropy, alignment and uniformity per model",
    "tau_sweep.png": "Test nDCG@10 (all and unseen-document queries) and uniformity of short fine-tunes at several InfoNCE temperatures",
}


def short(name: str) -> str:
    """A model's display name: the last path component of an existing folder, else the name."""
    return Path(name).name if ("/" in name and Path(name).exists() and Path(name).name) else name


def display_names(results: dict) -> dict[str, str]:
    """Model name -> label for plots and tables; full names where two short ones would clash."""
    shorts = [short(n) for n in results]
    return {n: s if shorts.count(s) == 1 else n for n, s in zip(results, shorts)}


def summary(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The headline numbers per model, flat, for tables (NaN where a measure was skipped)."""
    rows, label = {}, display_names(results)
    for name, r in results.items():
        sim, probe, nce = r.get("class_similarity") or {}, r.get("linear_probe") or {}, r["infonce"]
        nan = float("nan")
        row = {"anisotropy": r["anisotropy"], "alignment": r["alignment"], "uniformity": r["uniformity"],
               "q_anisotropy": nan_if_none(r.get("query_anisotropy")), "q_uniformity": nan_if_none(r.get("query_uniformity")),
               "class_gap": sim.get("gap", float("nan")), "hist_overlap": sim.get("overlap", float("nan")),
               "probe_acc": probe["accuracy"][0] if probe else float("nan"),
               "mi_bound": nce["mi_bound"][-1] if nce["k"] else float("nan")}
        rows[label[name]] = row
    return rows


def nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _first_filled(sim: dict) -> float:
    """Left edge of the first bin that holds any pair, intra or inter."""
    filled = [e for e, p, q in zip(sim["bin_edges"], sim["intra_hist"], sim["inter_hist"]) if p or q]
    return filled[0] if filled else -1.0


def plot_similarity(results: dict, path: Path) -> Path | None:
    plt, label = _plt(), display_names(results)
    shown = {n: r["class_similarity"] for n, r in results.items() if r.get("class_similarity")}
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(9, 5))
    lines = []
    for colour, (name, sim) in zip(plt.cm.tab10.colors, shown.items()):
        edges = sim["bin_edges"]
        ax.stairs(sim["intra_hist"], edges, color=colour, linewidth=2, fill=False, label=f"{label[name]}: same class")
        ax.stairs(sim["intra_hist"], edges, color=colour, alpha=0.15, fill=True)
        ax.stairs(sim["inter_hist"], edges, color=colour, linewidth=2, linestyle="--", label=f"{label[name]}: different classes")
        lines.append(f"{label[name]}: overlap {sim['overlap']:.2f}, gap {sim['gap']:.2f} "
                     f"({sim['n_intra']} same-class / {sim['n_inter']} cross-class pairs)")
    low = min(_first_filled(sim) for sim in shown.values())
    ax.set_xlim(max(-1.0, low - 0.1), 1.0)
    ax.set_xlabel("cosine similarity between two documents")
    ax.set_ylabel("share of pairs per bin")
    ax.set_title("Same-class vs different-class document similarity\n"
                 "(class = documents relevant to the same query; less overlap, larger gap = better separated)")
    ax.legend(loc="upper left", fontsize=8)
    # below the axes, not inside: inside it covered the legend or the curves on narrow figures
    ax.text(0.0, -0.13, "\n".join(lines), transform=ax.transAxes, ha="left", va="top", fontsize=8)
    return _save(fig, path)


def plot_projection(results: dict, path: Path) -> Path:
    plt, label = _plt(), display_names(results)
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 6.5), squeeze=False, layout="constrained")
    for ax, (name, r) in zip(axes[0], results.items()):
        proj = r["projection"]
        key = "umap_" if "umap_points" in proj else ""
        bg = proj[f"{key}background"]
        if bg:
            ax.scatter(*zip(*bg), s=6, c="0.8", label="random documents")
        classes = proj["labels"]
        kind = "query" if r.get("source", {}).get("classes_from", "qrels").startswith("qrels") else "class"
        for colour, cls in zip(plt.cm.tab10.colors * 3, dict.fromkeys(classes)):
            pts = [p for p, c in zip(proj[f"{key}points"], classes) if c == cls]
            ax.scatter(*zip(*pts), s=40, color=colour, edgecolors="black", linewidths=0.5,
                       label=f"{kind} {cls} ({len(pts)} docs)")
        if key:
            ax.set_xlabel("UMAP 1"), ax.set_ylabel("UMAP 2")
            ax.set_title(f"{label[name]} (UMAP, cosine)")
        else:
            ev = proj["explained_variance"] or [0.0, 0.0]
            ax.set_xlabel(f"PC 1 ({ev[0]:.0%} of variance)"), ax.set_ylabel(f"PC 2 ({ev[1]:.0%} of variance)")
            ax.set_title(label[name])
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.suptitle("Document embeddings projected to 2-D: coloured points are the largest classes\n"
                 "(documents relevant to the same query); grey points are random documents for context")
    return _save(fig, path)


def plot_probe(results: dict, path: Path) -> Path | None:
    plt, label = _plt(), display_names(results)
    shown = {n: r["linear_probe"] for n, r in results.items() if r.get("linear_probe")}
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, (name, probe) in zip(plt.cm.tab10.colors, shown.items()):
        ax.plot(probe["sigma"], probe["accuracy"], "o-", color=colour, label=label[name])
    first = next(iter(shown.values()))
    ax.axhline(first["majority_baseline"], color="0.5", linestyle=":", label="always the largest class")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("noise norm sigma (relative to the unit-length embedding)")
    ax.set_ylabel("probe accuracy on held-out documents")
    ax.set_title(f"Linear probe under noise: which query a document belongs to\n"
                 f"(logistic regression on {first['n_train']} documents, tested on {first['n_test']}, "
                 f"{first['n_classes']} classes)")
    ax.legend()
    return _save(fig, path)


def plot_infonce(results: dict, path: Path) -> Path:
    plt, label = _plt(), display_names(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ks = max((r["infonce"]["k"] for r in results.values()), key=len)
    for ax in (left, right):
        ax.plot(ks, [math.log(k + 1) for k in ks], color="0.5", linestyle=":",
                label="log(K+1): loss of random embeddings / ceiling of the bound")
    for colour, (name, r) in zip(plt.cm.tab10.colors, results.items()):
        nce = r["infonce"]
        left.plot(nce["k"], nce["loss"], "o-", color=colour, label=label[name])
        right.plot(nce["k"], nce["mi_bound"], "o-", color=colour, label=label[name])
    for ax, what in ((left, "InfoNCE loss L (nats)"), (right, "MI lower bound log(K+1) - L (nats)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("number of random negatives K per query")
        ax.set_ylabel(what)
        ax.legend(fontsize=8)
    tau = next(iter(results.values()))["infonce"]["temperature"]
    left.set_title("Loss with K negatives (lower = positives stand out)")
    right.set_title("Bound on I(query; relevant doc) (higher = more shared information)")
    fig.suptitle(f"Effect of the number of negatives on a fixed model (temperature {tau})")
    return _save(fig, path)


def plot_summary(results: dict, path: Path) -> Path:
    plt = _plt()
    names = list(display_names(results).values())
    panels = [("anisotropy", "mean cosine of random doc pairs\n(lower = more isotropic)"),
              ("alignment", "mean squared distance query - relevant doc\n(lower = positives closer)"),
              ("uniformity", "log mean exp(-2 ||x - y||^2)\n(lower = more uniform)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    colours = plt.cm.tab10.colors[:len(names)]
    for ax, (key, label) in zip(axes, panels):
        values = [r[key] for r in results.values()]
        bars = ax.bar(names, values, color=colours)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.margins(y=0.15)
        ax.set_title(key)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(axis="x", labelrotation=15, labelsize=8)
    fig.suptitle("Geometry of each model's embedding space (Wang & Isola 2020 alignment / uniformity)")
    fig.tight_layout()
    return _save(fig, path)


def plot_tau_sweep(sweep: dict, path: Path) -> Path:
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    taus = sweep["tau"]
    left.plot(taus, sweep["ndcg@10"], "o-", label="fine-tuned, all test queries")
    if sweep["base_ndcg@10"] and sweep["base_ndcg@10"][0] is not None:
        left.axhline(sweep["base_ndcg@10"][0], color="0.5", linestyle=":", label="base model, all")
    unseen = sweep.get("unseen_ndcg@10") or []
    if any(u is not None for u in unseen):  # queries whose relevant documents were never training positives
        left.plot(taus, [math.nan if u is None else u for u in unseen], "s--", label="fine-tuned, unseen documents")
        base_unseen = sweep.get("base_unseen_ndcg@10") or [None]
        if base_unseen[0] is not None:
            left.axhline(base_unseen[0], color="black", linestyle="--", linewidth=1, label="base model, unseen")
    left.set_ylabel(f"nDCG@10 on {sweep['split']}")
    left.set_title("Retrieval quality (higher is better)")
    right.plot(taus, [math.nan if u is None else u for u in sweep["uniformity"]], "o-", label="documents")
    right.plot(taus, [math.nan if u is None else u for u in sweep["query_uniformity"]], "s--", label="queries")
    right.set_ylabel("uniformity log mean exp(-2 ||x - y||^2)")
    right.set_title("Uniformity (lower = spread more evenly)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(taus, [f"{t:g}" for t in taus])
        ax.set_xlabel("InfoNCE temperature tau (log scale)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Temperature sweep: {len(taus)} short fine-tunes of {short(sweep['base'])} "
                 f"({sweep['mode']} mode, {sweep['epochs']} epoch{'s' if sweep['epochs'] != 1 else ''} each)")
    fig.tight_layout()
    return _save(fig, path)


def plot_all(results: dict[str, dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Write every plot that has data into ``out_dir``; return the files written."""
    out_dir = Path(out_dir)
    drawers = {"similarity_hist.png": plot_similarity, "projection.png": plot_projection,
               "probe_noise.png": plot_probe, "infonce_k.png": plot_infonce, "summary.png": plot_summary}
    written = [draw(results, out_dir / name) for name, draw in drawers.items()]
    return [p for p in written if p is not None]


def draw_geometry(results: dict[str, dict[str, Any]], out_dir: str | Path, sweep: dict | None = None) -> list[Path]:
    """Every plot of :func:`plot_all`, plus ``tau_sweep.png`` when ``sweep`` is given; the files written."""
    out_dir = Path(out_dir)
    return plot_all(results, out_dir) + ([plot_tau_sweep(sweep, out_dir / "tau_sweep.png")] if sweep else [])


def geometry_markdown(results: dict[str, dict[str, Any]], files: list[Path], relative_to: str | Path) -> str:
    """The markdown section for plots already drawn (``files``): table, how to read it, images.

    Image links are relative to ``relative_to``, the folder the markdown will be saved in.
    """
    import os

    from retrieval.report import markdown_table

    base = Path(relative_to)
    rows = summary(results)
    parts = ["## Embedding geometry", "", markdown_table(rows), "",
             "- **anisotropy**: mean cosine of random document pairs; near 0 is isotropic, MLM-only BERTs sit near 0.8-0.9.",
             "- **q_anisotropy** / **q_uniformity**: the same two measures over the queries (a model tuned on the "
             "query side only changes these, alignment and the InfoNCE curve, not the document measures).",
             "- **alignment** / **uniformity** (Wang & Isola 2020): mean squared distance between a query and its relevant "
             "document; log of the mean Gaussian potential over document pairs (t=2). Lower is better for both.",
             "- **class_gap** / **hist_overlap**: documents relevant to the same query form a class; the gap between mean "
             "same-class and cross-class cosine (higher is better) and the overlap of their histograms (lower is better).",
             "- **probe_acc**: accuracy of a logistic-regression probe predicting a document's class (no noise).",
             "- **mi_bound**: log(K+1) - InfoNCE loss at the largest K, a lower bound on the query/document mutual information.",
             ""]
    for path in files:
        parts += [f"![{PLOTS[path.name]}]({Path(os.path.relpath(path, base)).as_posix()})", f"*{PLOTS[path.name]}*", ""]
    return "\n".join(parts)


def geometry_report(results: dict[str, dict[str, Any]], out_dir: str | Path, relative_to: str | Path | None = None,
                    sweep: dict | None = None) -> str:
    """Draw the plots into ``out_dir`` and return a markdown section (table, how to read it, images).

    Image links are relative to ``relative_to`` (default ``out_dir``: a report saved beside the plots).
    ``sweep``: the result of ``finetune.tau_sweep.tau_sweep``, drawn as ``tau_sweep.png`` when given.
    """
    files = draw_geometry(results, out_dir, sweep)
    return geometry_markdown(results, files, relative_to if relative_to is not None else out_dir)
