"""Measures of an embedding space's geometry: what contrastive tuning does to it.

Plain functions over numpy arrays of embeddings, one per measure; every input is
L2-normalised first (the measures are defined on the unit sphere). Large sets
are handled by sampling pairs with a seeded generator, so results are
reproducible; where the set is small enough every pair is used and the value is
exact. :func:`retrieval.geometry_measure.measure_all` gathers them for one model into a
JSON-ready dict.
Shortcuts taken on purpose: the probe's noise is scaled to the unit sphere (see
:func:`linear_probe`); UMAP is used only when ``umap-learn`` happens to be installed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

EXACT_PAIRS = 2_000_000  # up to this many distinct pairs every pair is used, above it pairs are sampled
DEFAULT_KS = tuple(2**i for i in range(11))  # 1, 2, 4, ..., 1024
DEFAULT_SIGMAS = (0.0, 0.5, 1.0, 2.0, 3.0)  # noise norm relative to a unit vector; 2 ~ 0.1 per coordinate at d=384


def unit(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    return vecs / np.maximum(np.linalg.norm(vecs, axis=-1, keepdims=True), 1e-12)


def random_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i != j: every unordered pair when there are at most ``n_pairs``, else a sample."""
    if n < 2:
        raise ValueError(f"need at least 2 vectors for pairs, got {n}")
    if n * (n - 1) // 2 <= n_pairs:
        return np.triu_indices(n, 1)
    i = rng.integers(0, n, n_pairs)
    j = rng.integers(0, n - 1, n_pairs)
    return i, j + (j >= i)  # j drawn from the n-1 others: never equal to i


def pair_dots(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """``a[i] . b[j]`` row by row, in chunks so that large pair sets stay small in memory."""
    return np.concatenate([np.einsum("nd,nd->n", a[i[s:s + chunk]], b[j[s:s + chunk]]) for s in range(0, len(i), chunk)]
                          or [np.zeros(0, np.float32)])


def anisotropy(doc_vecs: np.ndarray, n_pairs: int = 100_000, seed: int = 0) -> float:
    """Mean cosine similarity over random distinct pairs, ``E_{x != y}[cos(x, y)]``.

    Near 0 for an isotropic space; identical vectors give 1. MLM-trained BERTs
    sit around 0.8-0.9 ("representation degeneration", Ethayarajh 2019, *How
    Contextual are Contextualized Word Representations?*); contrastive training
    spreads them out (Gao et al. 2021, SimCSE).
    """
    x = unit(doc_vecs)
    i, j = random_pairs(len(x), n_pairs, np.random.default_rng(seed))
    return float(pair_dots(x, x, i, j).mean())


def alignment(q_vecs: np.ndarray, pos_vecs: np.ndarray, alpha: float = 2.0) -> float:
    """``E_(x,y)~positives ||f(x) - f(y)||^alpha`` over (query, relevant document) rows; 0 when they coincide.

    Wang & Isola 2020, *Understanding Contrastive Representation Learning through
    Alignment and Uniformity on the Hypersphere*, eq. (2). Lower is better.
    """
    q, p = unit(q_vecs), unit(pos_vecs)
    return float(np.mean(np.linalg.norm(q - p, axis=1) ** alpha))


def uniformity(vecs: np.ndarray, t: float = 2.0, n_pairs: int = 100_000, seed: int = 0) -> float:
    """``log E_{x != y} exp(-t ||f(x) - f(y)||^2)`` over random distinct pairs (Wang & Isola 2020, eq. (3)).

    The log of the mean Gaussian potential: lower (more negative) means the
    points cover the sphere more evenly; 0 when all points coincide. Computed
    with ``||x - y||^2 = 2 - 2 cos(x, y)`` and a stable log-mean-exp.
    """
    x = unit(vecs)
    i, j = random_pairs(len(x), n_pairs, np.random.default_rng(seed))
    a = (-t * (2.0 - 2.0 * pair_dots(x, x, i, j))).astype(np.float64)
    return float(a.max() + np.log(np.mean(np.exp(a - a.max()))))


def classes_from_qrels(qrels: Mapping[str, Mapping[str, int]], doc_ids: Sequence[str], min_size: int = 2) -> dict[str, str]:
    """Document id -> class: documents judged relevant (score > 0) to the same query form a class.

    A document relevant to several queries joins the class of the query with
    the most relevant documents (ties: the smallest query id), so classes stay
    as large as possible and the answer does not depend on dict order. Documents
    absent from ``doc_ids`` are ignored; classes left with fewer than ``min_size``
    members are dropped (one document has no intra-class pair).
    """
    known = set(doc_ids)
    members = {q: sorted(d for d, rel in docs.items() if rel > 0 and d in known) for q, docs in qrels.items()}
    owner: dict[str, str] = {}
    for q in sorted(members, key=lambda q: (-len(members[q]), q)):
        for d in members[q]:
            owner.setdefault(d, q)
    sizes = Counter(owner.values())
    return {d: q for d, q in owner.items() if sizes[q] >= min_size}


def _class_pairs(labels: np.ndarray, n_pairs: int, rng: np.random.Generator) -> tuple[tuple, tuple]:
    """(intra, inter) index pairs: all of them for small sets, else sampled (intra by a random member, then a classmate)."""
    n = len(labels)
    if n * (n - 1) // 2 <= EXACT_PAIRS:
        i, j = np.triu_indices(n, 1)
        same = labels[i] == labels[j]
        return _cap((i[same], j[same]), n_pairs, rng), _cap((i[~same], j[~same]), n_pairs, rng)
    i, j = random_pairs(n, 4 * n_pairs, rng)
    diff = labels[i] != labels[j]
    inter = (i[diff][:n_pairs], j[diff][:n_pairs])
    order = np.argsort(labels, kind="stable")
    classes, start, count = np.unique(labels[order], return_index=True, return_counts=True)
    group = np.searchsorted(classes, labels)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    a = rng.choice(np.flatnonzero(count[group] >= 2), n_pairs)
    g = group[a]
    offset = rng.integers(0, count[g] - 1)  # a classmate other than a itself
    b = order[start[g] + offset + (offset >= rank[a] - start[g])]
    return (a, b), inter


def _cap(pairs: tuple[np.ndarray, np.ndarray], n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if len(pairs[0]) <= n_pairs:
        return pairs
    keep = rng.choice(len(pairs[0]), n_pairs, replace=False)
    return pairs[0][keep], pairs[1][keep]


def class_similarity(vecs: np.ndarray, labels: Sequence, n_pairs: int = 50_000, bins: int = 50, seed: int = 0) -> dict:
    """Cosines of same-class (intra) and different-class (inter) pairs, their histogram overlap and mean gap.

    ``overlap = sum_b min(p_b, q_b)`` for the intra and inter histograms ``p, q``
    normalised to sum 1 on the same ``bins`` equal bins over [-1, 1]: 1 when the
    two distributions coincide, 0 when no bin holds both. ``gap = mean(intra) -
    mean(inter)``. A space that separates classes has a large gap and a small overlap.
    """
    x, labels = unit(vecs), np.asarray(labels)
    (ia, ib), (ea, eb) = _class_pairs(labels, n_pairs, np.random.default_rng(seed))
    if len(ia) == 0 or len(ea) == 0:
        raise ValueError("class_similarity needs at least one class with two members and two classes")
    intra, inter = pair_dots(x, x, ia, ib), pair_dots(x, x, ea, eb)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    p = np.histogram(np.clip(intra, -1, 1), edges)[0] / len(intra)
    q = np.histogram(np.clip(inter, -1, 1), edges)[0] / len(inter)
    return {
        "intra_mean": float(intra.mean()), "inter_mean": float(inter.mean()),
        "gap": float(intra.mean() - inter.mean()), "overlap": float(np.minimum(p, q).sum()),
        "n_intra": int(len(intra)), "n_inter": int(len(inter)),
        "bin_edges": edges.tolist(), "intra_hist": p.tolist(), "inter_hist": q.tolist(),
    }


def pca_2d(vecs: np.ndarray, fit_vecs: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """Project onto the top two principal axes (numpy SVD of the centred ``fit_vecs``, default ``vecs``).

    Returns the 2-D points and the fraction of variance each axis explains.
    """
    x = unit(vecs)
    fit = x if fit_vecs is None else unit(fit_vecs)
    mean = fit.mean(axis=0)
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    explained = (s[:2] ** 2 / max(float((s**2).sum()), 1e-12)).tolist()
    return (x - mean) @ vt[:2].T, explained


def umap_2d(vecs: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """UMAP (cosine metric) to 2-D when ``umap-learn`` is installed, else None (it is optional)."""
    try:
        import umap
    except ImportError:
        return None
    return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(unit(vecs))


def _stratified_split(labels: np.ndarray, train_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per class, ``round(train_fraction * size)`` members (at least 1, at most size - 1) go to training."""
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:
            continue
        cut = int(np.clip(round(train_fraction * len(members)), 1, len(members) - 1))
        train.extend(members[:cut])
        test.extend(members[cut:])
    return np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)


def linear_probe(
    vecs: np.ndarray, labels: Sequence, train_fraction: float = 0.2, sigmas: Sequence[float] = DEFAULT_SIGMAS,
    seed: int = 0, repeats: int = 5,
) -> dict:
    """Accuracy of a logistic-regression probe trained on clean embeddings, tested under Gaussian noise.

    A stratified ``train_fraction`` of each class trains scikit-learn's
    ``LogisticRegression`` (default C=1) on the unit vectors themselves; no
    feature scaling, because standardising a few-shot training set blows up
    near-constant coordinates and with them the noise. The rest is classified
    after adding ``N(0, (sigma^2 / d) I)`` to each test embedding and
    re-normalising. The noise is scaled by the dimension ``d`` so that ``sigma``
    is the expected noise norm relative to the unit-norm embedding, which makes
    sigmas comparable across models of different widths. Noise goes to the test
    embeddings only: the probe is fixed, so the drop measures the margins between
    classes in the space, not how well a classifier learns from noisy data (noise
    in training would act as a regulariser and hide part of that effect).
    Accuracy at sigma > 0 is the mean over ``repeats`` noise draws.
    """
    import warnings

    from sklearn.linear_model import LogisticRegression

    x, labels = unit(vecs), np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = _stratified_split(labels, train_fraction, rng)
    if len(np.unique(labels[train])) < 2:
        raise ValueError("linear_probe needs at least two classes with two members each")
    with warnings.catch_warnings():  # few-shot classes make sklearn suspect a regression target: expected here
        warnings.simplefilter("ignore", UserWarning)
        probe = LogisticRegression(max_iter=2000).fit(x[train], labels[train])
    accuracy = []
    for sigma in sigmas:
        draws = [x[test] + rng.normal(0.0, sigma / np.sqrt(x.shape[1]), x[test].shape) for _ in range(repeats if sigma else 1)]
        accuracy.append(float(np.mean([np.mean(probe.predict(unit(d)) == labels[test]) for d in draws])))
    majority = Counter(labels[test].tolist()).most_common(1)[0][1] / len(test)
    return {"sigma": [float(s) for s in sigmas], "accuracy": accuracy, "majority_baseline": float(majority),
            "n_train": int(len(train)), "n_test": int(len(test)), "n_classes": int(len(np.unique(labels[train])))}


def infonce_vs_k(
    q_vecs: np.ndarray, pos_vecs: np.ndarray, candidate_vecs: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 0.05, seed: int = 0, exclude: Sequence[Sequence[int]] | None = None,
) -> dict:
    """Mean InfoNCE loss with K random negatives, and the mutual-information bound ``log(K+1) - L``.

    For each (query q, positive p) row and K negatives n_k drawn without
    replacement from ``candidate_vecs`` (never one of the candidate rows listed in
    ``exclude[row]``, e.g. the query's relevant documents), with s = cos / tau:
    ``L = E[ log(exp s(q,p) + sum_k exp s(q,n_k)) - s(q,p) ]``. van den Oord et al.
    2018 (*Representation Learning with Contrastive Predictive Coding*) show
    ``I(q; p) >= log(K+1) - L``; with random embeddings L is about log(K+1) and
    the bound about 0. K larger than the candidates available is skipped.
    """
    q, p, c = unit(q_vecs), unit(pos_vecs), unit(candidate_vecs)
    rng = np.random.default_rng(seed)
    s_pos = np.einsum("nd,nd->n", q, p).astype(np.float64) / temperature
    s_all = (q @ c.T).astype(np.float64) / temperature
    mask = np.zeros(s_all.shape, dtype=bool)
    for n, rows in enumerate(exclude or []):
        mask[n, np.asarray(rows, dtype=np.int64)] = True
    available = c.shape[0] - int(mask.sum(axis=1).max(initial=0))
    out = {"temperature": temperature, "k": [], "loss": [], "mi_bound": [], "log_k_plus_1": []}
    for k in ks:
        if k > available:
            continue
        keys = rng.random(s_all.shape)
        keys[mask] = np.inf
        neg = np.take_along_axis(s_all, np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)
        logits = np.concatenate([s_pos[:, None], neg], axis=1)
        top = logits.max(axis=1)
        loss = float(np.mean(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - s_pos))
        for key, value in (("k", int(k)), ("loss", loss), ("mi_bound", float(np.log(k + 1) - loss)),
                           ("log_k_plus_1", float(np.log(k + 1)))):
            out[key].append(value)
    return out
