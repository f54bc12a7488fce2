"""WiSE-FT: weight 0 is exactly the base model, weight 1 exactly the tuned one, ties go to the base side."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune.interpolate import choose_alpha, interpolate, mixed_state

TEXTS = ["cats purr", "fish swim in rivers", "the moon orbits the earth"]


@pytest.fixture
def pair(tiny_model_path):
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(str(tiny_model_path), device="cpu")
    tuned = SentenceTransformer(str(tiny_model_path), device="cpu")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return base, tuned


def test_weight_zero_gives_the_base_embeddings_and_one_the_tuned(pair):
    base, tuned = pair
    np.testing.assert_array_equal(interpolate(base, tuned, 0.0).encode(TEXTS), base.encode(TEXTS))
    np.testing.assert_array_equal(interpolate(base, tuned, 1.0).encode(TEXTS), tuned.encode(TEXTS))
    half = interpolate(base, tuned, 0.5).encode(TEXTS)
    assert not np.allclose(half, base.encode(TEXTS), atol=1e-4) and not np.allclose(half, tuned.encode(TEXTS), atol=1e-4)


def test_the_mix_is_the_straight_line_between_the_weights_and_leaves_inputs_alone(pair):
    base, tuned = pair
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    mixed = mixed_state(base, tuned, 0.25)
    for name, t in tuned.state_dict().items():
        if t.is_floating_point():
            torch.testing.assert_close(mixed[name], 0.75 * base.state_dict()[name] + 0.25 * t)
        torch.testing.assert_close(t, before[name])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mixed_state(base, tuned, 1.5)


def test_choose_alpha_takes_the_best_and_breaks_ties_towards_the_base(pair):
    base, tuned = pair
    probe = base.encode(TEXTS[:1])[0]

    def closeness_to_base(model) -> float:  # highest at a=0
        return float(model.encode(TEXTS[:1])[0] @ probe)

    alpha, scores = choose_alpha(base, tuned, closeness_to_base)
    assert alpha == 0.0 and set(scores) == {0.0, 0.25, 0.5, 0.75, 1.0}
    alpha, _ = choose_alpha(base, tuned, lambda m: 1.0)
    assert alpha == 0.0
    calls = []
    alpha, scores = choose_alpha(base, tuned, lambda m: calls.append(1) or 0.5, known={0.0: 0.1, 1.0: 0.9})
    assert alpha == 1.0 and len(calls) == 3 and scores[1.0] == 0.9
