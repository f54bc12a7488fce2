"""``bench/recipe_book.py``: every recipe is a valid fine-tuning config, every listed row can be run."""

from __future__ import annotations

import dataclasses

import pytest

from finetune.config import FinetuneConfig
from tests.bench.load import load_bench_script


@pytest.fixture(scope="module")
def book():
    return load_bench_script("recipe_book")


def test_every_recipe_is_a_valid_config(book):
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    for name, knobs in book.RECIPES.items():
        assert set(knobs) <= fields, f"{name}: unknown knobs {set(knobs) - fields}"
        FinetuneConfig(test_split="", **knobs).validate()


def test_every_listed_row_is_a_recipe_or_one_the_script_builds_itself(book):
    special = {"full", "st-plain", "st-plain-2ep"}  # full: full-wise's checkpoint; st-plain: no code of ours
    for name in book.ALL:
        trained = name.removesuffix("-a1")  # a WiSE-FT row's checkpoint before interpolation
        assert name in special or trained in book.RECIPES, name
    assert len(book.ALL) == len(set(book.ALL))


def test_rows_measured_before_the_defaults_moved_keep_what_they_measured(book):
    assert book.RECIPES["full-wise"]["attention_dropout"] == 0.1 and book.RECIPES["full-wise"]["num_negatives"] == 1
    default = FinetuneConfig()
    n3 = FinetuneConfig(test_split="", **book.RECIPES["n3-3ep"])
    # (siglip_init / nce_bias are pinned to their old values on every row, but only SigLIP / NCE read them)
    for knob in ("mode", "epochs", "learning_rate", "num_negatives", "attention_dropout", "hidden_dropout", "select_on",
                 "interpolate", "loss", "batch_size", "rank_start", "rank_end", "doc_max_length"):
        assert getattr(n3, knob) == getattr(default, knob), f"n3-3ep is the default recipe, but its {knob} differs"
