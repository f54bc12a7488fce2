"""Contrastive fine-tuning of sentence-transformers bi-encoders (pairs, negatives, losses, training)."""
