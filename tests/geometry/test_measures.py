"""Each geometry measure on synthetic embeddings whose answer is known in advance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval import geometry as g
from retrieval import geometry_measure as m


def _sphere(n: int, d: int, seed: int = 0) -> np.ndarray:
    return g.unit(np.random.default_rng(seed).normal(size=(n, d)))


def _clusters(n_classes: int, per_class: int, d: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Classes around orthogonal centres (one-hot axes) with Gaussian jitter of norm about ``spread``."""
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:n_classes]
    labels = np.repeat(np.arange(n_classes), per_class)
    vecs = centres[labels] + rng.normal(0, spread / np.sqrt(d), (len(labels), d))
    return g.unit(vecs), labels


def test_identical_vectors_have_anisotropy_one_and_alignment_zero():
    v = np.tile([[0.3, -1.2, 2.0]], (50, 1))
    assert g.anisotropy(v) == pytest.approx(1.0, abs=1e-6)
    assert g.alignment(v, v) == pytest.approx(0.0, abs=1e-6)
    assert g.uniformity(v) == pytest.approx(0.0, abs=1e-6)


def test_random_high_dimensional_vectors_are_nearly_isotropic():
    assert abs(g.anisotropy(_sphere(400, 256))) < 0.02


def test_anisotropy_of_antipodal_pair_is_exactly_minus_one():
    assert g.anisotropy(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)


def test_alignment_of_orthogonal_pairs_is_squared_chord_two():
    q, p = np.eye(4)[:2], np.eye(4)[2:]
    assert g.alignment(q, p) == pytest.approx(2.0)
    assert g.alignment(q, p, alpha=1) == pytest.approx(np.sqrt(2.0))


def test_points_spread_on_a_circle_are_more_uniform_than_a_tight_blob():
    angles = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    circle = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    blob = np.stack([np.cos(angles * 0.05), np.sin(angles * 0.05)], axis=1)  # an arc of 18 degrees
    assert g.uniformity(circle) < g.uniformity(blob) - 1.0
    # the circle's exact value: log of the mean of exp(-t * 2(1 - cos)) over the unit circle = -4 + log I0(4)
    from scipy.special import i0

    assert g.uniformity(circle) == pytest.approx(-4 + np.log(i0(4)), abs=0.02)


def test_sampled_pairs_never_pair_a_vector_with_itself():
    i, j = g.random_pairs(10_000, 5_000, np.random.default_rng(1))
    assert len(i) == 5_000 and np.all(i != j)


def test_two_far_apart_clusters_have_zero_histogram_overlap_and_a_large_gap():
    a = g.unit(np.array([1.0, 0.0]) + np.random.default_rng(0).normal(0, 0.01, (30, 2)))
    vecs, labels = np.concatenate([a, -a]), np.repeat([0, 1], 30)
    sim = g.class_similarity(vecs, labels)
    assert sim["overlap"] == 0.0
    assert sim["gap"] > 1.9
    assert sim["n_intra"] == 2 * 30 * 29 // 2 and sim["n_inter"] == 30 * 30
    assert sum(sim["intra_hist"]) == pytest.approx(1.0) and sum(sim["inter_hist"]) == pytest.approx(1.0)


def test_classes_drawn_from_one_distribution_overlap_almost_fully():
    vecs = _sphere(300, 32)
    sim = g.class_similarity(vecs, np.arange(300) % 3)
    assert sim["overlap"] > 0.85 and abs(sim["gap"]) < 0.02


def test_sampled_class_pairs_respect_class_membership(monkeypatch):
    monkeypatch.setattr(g, "EXACT_PAIRS", 10)
    vecs, labels = _clusters(4, 25, 8, spread=0.0)
    sim = g.class_similarity(vecs, labels, n_pairs=2_000)
    assert sim["intra_mean"] == pytest.approx(1.0) and sim["inter_mean"] == pytest.approx(0.0, abs=1e-6)
    assert sim["n_intra"] == 2_000


def test_classes_from_qrels_puts_shared_documents_in_the_largest_class_and_drops_singletons():
    qrels = {"q2": {"a": 1, "b": 1, "c": 1}, "q1": {"a": 1, "d": 1}, "q3": {"e": 1, "f": 0}, "q4": {"x": 1, "y": 1}}
    classes = g.classes_from_qrels(qrels, ["a", "b", "c", "d", "e", "f", "x"])
    assert classes == {"a": "q2", "b": "q2", "c": "q2"}  # d alone in q1, e alone, f not relevant, y unknown
    tie = g.classes_from_qrels({"qb": {"a": 1, "b": 1}, "qa": {"a": 1, "c": 1}}, ["a", "b", "c"], min_size=1)
    assert tie["a"] == "qa"


def test_probe_is_perfect_on_separable_clusters_and_drops_as_noise_grows():
    vecs, labels = _clusters(4, 40, 16, spread=0.2)
    probe = g.linear_probe(vecs, labels, sigmas=(0.0, 0.5, 1.5, 4.0))
    acc = probe["accuracy"]
    assert acc[0] == 1.0
    assert acc[-1] < 0.7 and acc[-1] < acc[2] <= acc[1] + 0.02 and acc[2] < 1.0
    assert probe["n_train"] == 4 * 8 and probe["n_test"] == 4 * 32 and probe["n_classes"] == 4


def test_infonce_on_random_embeddings_is_about_log_k_plus_one_and_bound_about_zero():
    q, p, cand = _sphere(100, 4096, 1), _sphere(100, 4096, 2), _sphere(1500, 4096, 3)
    out = g.infonce_vs_k(q, p, cand, ks=(1, 16, 1024, 4096))
    assert out["k"] == [1, 16, 1024]  # more negatives than candidates is skipped
    for loss, bound, k in zip(out["loss"], out["mi_bound"], out["k"]):
        assert loss == pytest.approx(np.log(k + 1), abs=0.12)
        assert abs(bound) < 0.12


def test_infonce_bound_grows_with_k_when_positives_match_and_never_draws_excluded_negatives():
    q = _sphere(50, 64, 4)
    cand = np.concatenate([q, _sphere(500, 64, 5)])
    exclude = [[n] for n in range(50)]  # each query's own copy in the candidates
    out = g.infonce_vs_k(q, q, cand, ks=(1, 8, 64), exclude=exclude)
    assert out["loss"][0] < 0.01  # cos(q, q) = 1 dominates every random negative at tau 0.05
    assert out["mi_bound"] == sorted(out["mi_bound"]) and out["mi_bound"][-1] > np.log(65) - 0.05
    with_copy = g.infonce_vs_k(q, q, cand, ks=(549,))["loss"][0]  # the copy ties with the positive: loss ~ log 2
    without_copy = g.infonce_vs_k(q, q, cand, ks=(549,), exclude=exclude)["loss"][0]
    assert with_copy > 0.6 and without_copy < 0.01


def test_pca_recovers_the_plane_the_points_lie_in():
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 2)))[0].T  # a random plane in 10-D
    angles = np.linspace(0, np.pi, 200)
    vecs = np.stack([np.cos(angles), 0.5 * np.sin(angles)], axis=1) @ basis  # an ellipse arc: unit after normalising
    points, explained = g.pca_2d(vecs)
    assert points.shape == (200, 2) and sum(explained) == pytest.approx(1.0, abs=1e-5) and explained[0] > explained[1]


def test_measure_all_is_json_serialisable_and_has_every_measure():
    vecs, labels = _clusters(3, 10, 16, spread=0.3)
    out = m.measure_all(vecs, vecs[:10], vecs[10:20], vecs, labels, config=m.GeometryConfig(ks=(1, 4)))
    restored = json.loads(json.dumps(out))
    assert {"anisotropy", "alignment", "uniformity", "class_similarity", "linear_probe", "infonce", "projection"} <= set(restored)
    assert len(restored["projection"]["points"]) == 30 and restored["counts"]["classes"] == 3


def test_measure_all_without_labels_skips_the_class_measures():
    vecs = _sphere(40, 8)
    out = m.measure_all(vecs, vecs[:5], vecs[5:10], config=m.GeometryConfig(ks=(1, 2)))
    assert out["class_similarity"] is None and out["linear_probe"] is None
    assert out["projection"]["points"] == [] and len(out["projection"]["background"]) == 40


def test_infonce_negatives_come_from_a_capped_sample_of_a_large_corpus_without_the_excluded_rows():
    q = _sphere(20, 64, 6)
    docs = np.concatenate([q, _sphere(300, 64, 7)])
    cfg = m.GeometryConfig(ks=(1, 64, 128), infonce_candidates=100)
    sampled = np.random.default_rng(cfg.seed).choice(len(docs), 100, replace=False)
    assert (sampled < 20).sum() >= 3  # the sample holds copies of some queries: the exclusion matters below
    out = m.measure_all(docs, q, q, exclude=[[n] for n in range(20)], config=cfg)["infonce"]
    assert out["k"] == [1, 64]  # K=128 needs more than the 100 sampled candidates
    assert out["loss"][-1] < 0.01  # no query's own copy was drawn as a negative
