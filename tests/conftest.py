"""Shared fixtures: a tiny BEIR dataset and a tiny random BERT bi-encoder, both built here.

No test touches the network: HF_HUB_OFFLINE is set before anything imports the
hub client. The tiny model is built once per session and copied per test, as
sentence-transformers' own suite does.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

TOPICS = {
    "cat": "cats purr and sleep on warm windows",
    "dog": "dogs bark and fetch sticks in the park",
    "sun": "the sun is a star made of hot plasma",
    "moon": "the moon orbits the earth every month",
    "rain": "rain falls from clouds when air cools",
    "tree": "trees grow leaves and roots in soil",
    "fish": "fish swim in rivers lakes and oceans",
    "bird": "birds fly south in the cold winter",
}


def make_beir(folder: Path, n_per_topic: int = 3) -> Path:
    """A small BEIR folder: 8 topics x n documents, one train and one test query per topic."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for topic, sentence in TOPICS.items():
            for i in range(n_per_topic):
                doc = {"_id": f"{topic}{i}", "title": f"{topic} {i}", "text": f"{sentence} number {i}", "metadata": {}}
                f.write(json.dumps(doc) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for topic, sentence in TOPICS.items():
            f.write(json.dumps({"_id": f"q-{topic}", "text": sentence.split(" and ")[0], "metadata": {}}) + "\n")
            f.write(json.dumps({"_id": f"t-{topic}", "text": f"what about {topic}s", "metadata": {}}) + "\n")
    for split, prefix, docs in (("test", "q-", (0,)), ("train", "t-", (1, 2))):
        with open(folder / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for topic in TOPICS:
                for i in docs:
                    if i < n_per_topic:
                        f.write(f"{prefix}{topic}\t{topic}{i}\t1\n")
    return folder


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return make_beir(tmp_path / "toy")


def _vocab() -> list[str]:
    words = sorted({w for s in TOPICS.values() for w in s.split()} | set(TOPICS) | {"what", "about", "number"})
    words += [f"{t}s" for t in TOPICS] + [str(i) for i in range(10)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT with a vocabulary of the toy corpus, saved as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-bert")
    hf_dir = root / "hf"
    hf_dir.mkdir()
    (hf_dir / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(hf_dir), do_lower_case=True)
    tokenizer.save_pretrained(hf_dir)
    config = BertConfig(
        vocab_size=len(_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(hf_dir)
    assert "[UNK]" not in tokenizer.tokenize("cats purr"), "tiny tokenizer lost its vocabulary"
    transformer = models.Transformer(str(hf_dir), max_seq_length=32)
    pooling = models.Pooling(transformer.get_embedding_dimension(), "mean")
    st_dir = root / "st"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(st_dir))
    return st_dir


def keyword_vocab() -> list[str]:
    """The keyword encoder's words: index 0 is the unknown word (a zero vector)."""
    return ["[UNK]", *sorted(set(_vocab()[5:]))]


@pytest.fixture(scope="session")
def keyword_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-hot keyword encoder: a text's embedding is its normalised bag of words over :func:`keyword_vocab`.

    sentence-transformers' ``StaticEmbedding`` (mean of one-hot rows) + ``Normalize``, so the
    cosine of a query and a document is known by hand (:func:`keyword_cosine`) and tests can
    assert exact rankings, as sentence-transformers' own tests do with such encoders.
    """
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    words = keyword_vocab()
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    weights = np.eye(len(words), dtype=np.float32)
    weights[0] = 0.0
    folder = tmp_path_factory.mktemp("keyword") / "st"
    SentenceTransformer(modules=[StaticEmbedding(tokenizer, embedding_weights=weights), Normalize()], device="cpu").save(str(folder))
    return folder


def keyword_cosine(query: str, text: str, weights=None) -> float:
    """Cosine of two texts under the keyword encoder (or one with embedding matrix ``weights``), by hand."""
    import re

    import numpy as np

    index = {w: i for i, w in enumerate(keyword_vocab())}
    matrix = np.eye(len(index), dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights is None:
        matrix[0] = 0.0

    def vector(t: str):
        v = sum(matrix[index.get(w, 0)] for w in re.findall(r"\w+|[^\w\s]+", t.lower()))
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    return float(vector(query) @ vector(text))


@pytest.fixture
def tiny_model_path(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model folder, safe to train or overwrite."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny-model"))


@pytest.fixture
def tiny_model(tiny_model_path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_path), device="cpu")
