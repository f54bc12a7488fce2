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
                   epoch_scale: float = 1.0) -> Path:
    """Training loss (left axis) and dev nDCG@10 (right axis) against epochs."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [(row["epoch"] * epoch_scale, row["loss"]) for row in train_log if "loss" in row and "epoch" in row]
    if steps:
        ax.plot(*zip(*steps), color="#d62728", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("InfoNCE loss", color="#d62728")
    dev = ax.twinx()
    if dev_history:
        dev.plot([h["epoch"] for h in dev_history], [h["ndcg@10"] for h in dev_history], "o-", color=COLORS["tuned"],
                 label="dev nDCG@10")
        best = max(dev_history, key=lambda h: h["ndcg@10"])
        values = [h["ndcg@10"] for h in dev_history]
        low, high = min(values), max(values)
        dev.set_ylim(low - 0.05 * (high - low or 1), high + 0.15 * (high - low or 1))  # headroom for the label
        dev.annotate(f"best {best['ndcg@10']:.3f}", (best["epoch"], best["ndcg@10"]), textcoords="offset points",
                     xytext=(0, 8), ha="center", color=COLORS["tuned"])
    dev.set_ylabel("dev nDCG@10", color=COLORS["tuned"])
    ax.set_title("Training: loss and dev nDCG@10 (the best evaluation is kept)")
    ax.grid(True, alpha=0.3)
    return _save(fig, Path(path))
