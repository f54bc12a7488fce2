"""The training curve shows dev-unseen and dev-seen beside all dev queries and marks the checkpoint the selecting line chose."""

from __future__ import annotations

import pytest

from jobs import plots


def _drawn(monkeypatch, tmp_path, **kw):
    """Draw the training curve and return its figure (kept open) and the PNG path."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: None)
    path = plots.training_curve(**kw, path=tmp_path / "curve.png")
    return figures[0], path


def test_training_curve_draws_all_unseen_and_seen_dev_lines_and_labels_the_selected_point(monkeypatch, tmp_path):
    train_log = [{"epoch": e / 4, "loss": 2.0 - e / 4} for e in range(1, 9)]
    # all dev queries peak at epoch 2, dev-unseen at epoch 1: the checkpoint selected on unseen is epoch 1's
    history = [{"epoch": 0.0, "ndcg@10": 0.50, "unseen_ndcg@10": 0.40, "seen_ndcg@10": 0.60},
               {"epoch": 1.0, "ndcg@10": 0.55, "unseen_ndcg@10": 0.47, "seen_ndcg@10": 0.63},
               {"epoch": 2.0, "ndcg@10": 0.58, "unseen_ndcg@10": 0.44, "seen_ndcg@10": 0.72}]
    fig, path = _drawn(monkeypatch, tmp_path, train_log=train_log, dev_history=history, select="unseen_ndcg@10")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_axis, dev_axis = fig.axes
    assert [line.get_label() for line in loss_axis.get_lines()] == ["training loss"]
    assert loss_axis.get_ylabel() == "InfoNCE loss"
    lines = {line.get_label(): list(line.get_ydata()) for line in dev_axis.get_lines()}
    assert lines == {"all dev queries nDCG@10": [0.50, 0.55, 0.58],
                     "dev, unseen documents nDCG@10 (selects)": [0.40, 0.47, 0.44],
                     "dev, seen documents nDCG@10": [0.60, 0.63, 0.72]}
    (note,) = [t for t in dev_axis.texts if t.get_text().startswith("selected")]
    assert note.get_text() == "selected 0.470" and note.xy == pytest.approx((1.0, 0.47))


def test_training_curve_without_seen_or_unseen_groups_selects_on_all(monkeypatch, tmp_path):
    history = [{"epoch": 0.0, "ndcg@10": 0.5}, {"epoch": 1.0, "ndcg@10": 0.6}, {"epoch": 2.0, "ndcg@10": 0.55}]
    fig, _ = _drawn(monkeypatch, tmp_path, train_log=[], dev_history=history, select="unseen_ndcg@10", loss="triplet")
    assert fig.axes[0].get_ylabel() == "triplet loss"
    dev_axis = fig.axes[1]
    assert [line.get_label() for line in dev_axis.get_lines()] == ["all dev queries nDCG@10"]
    (note,) = [t for t in dev_axis.texts if t.get_text().startswith("selected")]
    assert note.get_text() == "selected 0.600" and note.xy == pytest.approx((1.0, 0.6))
