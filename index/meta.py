"""What an index was built from, so that a wrong pairing is refused.

``meta.json`` names the model (and a fingerprint of its weights), the corpus (a
fingerprint of its texts and the document ids in index order), how vectors were
made (normalisation, prompts, backend, Matryoshka truncation) and how the index was
built (factory string, search parameters), plus checksums of the files beside it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

META_FILE = "meta.json"
FORMAT_VERSION = 1

# The fields that decide whether an index can answer for a given model and corpus.
IDENTITY_FIELDS = (
    "model_fingerprint",
    "corpus_fingerprint",
    "dim",
    "normalized",
    "query_prompt",
    "document_prompt",
    "factory",
    "truncate_dim",
)


class IndexMismatchError(ValueError):
    """The index on disk was built from another model, corpus or setting."""


class IndexIntegrityError(ValueError):
    """A file of the index directory is missing, truncated or not the one recorded."""


@dataclass
class IndexMeta:
    model: str
    model_fingerprint: str
    dim: int
    doc_ids: list[str]
    corpus_fingerprint: str
    factory: str = "Flat"
    normalized: bool = True
    query_prompt: str | None = None
    document_prompt: str | None = None
    corpus_source: str = ""
    backend: str = "torch"
    search_params: dict[str, Any] = field(default_factory=dict)
    # Matryoshka truncation: the vectors are the first ``dim`` coordinates of the model's embeddings,
    # renormalised; query vectors wider than ``dim`` are cut the same way at search. None: full width.
    truncate_dim: int | None = None
    files: dict[str, str] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> IndexMeta:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def differences(self, expected: dict[str, Any]) -> list[str]:
        """Human-readable lines for every identity field that differs from ``expected``."""
        out = []
        for name in IDENTITY_FIELDS:
            if name in expected and expected[name] != getattr(self, name):
                out.append(f"{name}: index has {_short(getattr(self, name))}, expected {_short(expected[name])}")
        return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
