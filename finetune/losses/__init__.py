"""Losses with the sentence-transformers loss contract: ``forward(sentence_features, labels) -> Tensor``."""
