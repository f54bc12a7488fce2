"""Retrieval with a bi-encoder: data loading, encoding, search, ranx metrics, fusion and reports.

The library floor above ``index``: it knows text, models and evaluation, never training
(``finetune``) or the commands. Nothing is imported here, so ``import retrieval.errors`` stays
as light as the module itself.
"""
