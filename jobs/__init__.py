"""The jobs: each composes the floors below (``index``, ``retrieval``, ``finetune``) into one
user-facing result, as a short file that reads as its list of stages.

* :mod:`jobs.tune`: ``retrieval tune``, from a dataset to a tuned model, its indexes, the
  before/after evaluation and the report (:mod:`jobs.tune_report`, :mod:`jobs.plots`).
"""
