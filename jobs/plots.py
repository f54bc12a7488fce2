"""The report's figures as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from index.atomic import atomic_path  # noqa: E402

COLORS = {"base": "#7f7f7f", "tuned": "#1f77b4", "bm25": "#ff7f0e", "hybrid": "#2ca02c"}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def recall_curves(curves: dict[str, Any], path: str | Path) -> Path:
    """Recall@k for k = 1..100, one line per system."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, values in curves["recall"].items():
        ax.plot(curves["k"], values, label=name, color=COLORS.get(name), linewidth=2 if name == "tuned" else 1.4)
    ax.set_xscale("log")
    ax.set_xlabel("k (documents retrieved, log scale)")
    ax.set_ylabel("mean recall@k")
    ax.set_title("Recall@k on the test queries: before (base) vs after (tuned)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(0, 1.0)
    ax.legend(loc="lower right")
    return _save(fig, Path(path))


def training_curve(train_log: list[dict[str, Any]], dev_history: list[dict[str, float]], path: str | Path,
                   select: str = "ndcg@10", loss: str = "infonce") -> Path:
    """Training loss (left axis) and dev nDCG@10 (right axis: all, dev-unseen, dev-seen) against epochs.

    ``select`` is the history key that chose the checkpoint; its best point is labelled. ``loss``
    (``--loss``) names the left axis.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [(row["epoch"], row["loss"]) for row in train_log if "loss" in row and "epoch" in row]
    if steps:
        ax.plot(*zip(*steps), color="#d62728", label="training loss")
    ax.set_xlabel("epoch")
    names = {"infonce": "InfoNCE", "nce": "NCE", "siglip": "SigLIP", "triplet": "triplet"}
    ax.set_ylabel(f"{names.get(loss, loss)} loss", color="#d62728")
    dev = ax.twinx()
    lines = [("ndcg@10", "all dev queries", "o-", COLORS["tuned"]),
             ("unseen_ndcg@10", "dev, unseen documents", "s-", "#9467bd"),
             ("seen_ndcg@10", "dev, seen documents", "^--", "#8c564b")]
    values = []
    for key, label, style, color in lines:
        points = [(h["epoch"], h[key]) for h in dev_history if key in h]
        if points:
            dev.plot(*zip(*points), style, color=color, label=f"{label} nDCG@10" + (" (selects)" if key == select else ""))
            values += [v for _, v in points]
    if values:
        key = select if any(select in h for h in dev_history) else "ndcg@10"
        best = max((h for h in dev_history if key in h), key=lambda h: h[key])
        low, high = min(values), max(values)
        dev.set_ylim(low - 0.05 * (high - low or 1), high + 0.2 * (high - low or 1))  # headroom for label and legend
        dev.annotate(f"selected {best[key]:.3f}", (best["epoch"], best[key]), textcoords="offset points",
                     xytext=(0, 8), ha="center", color="#333333")
        dev.legend(loc="upper right", fontsize=8)
    dev.set_ylabel("dev nDCG@10")
    ax.set_title("Training: loss and dev nDCG@10 (the checkpoint best on the selecting line is kept)")
    ax.grid(True, alpha=0.3)
    return _save(fig, Path(path))
