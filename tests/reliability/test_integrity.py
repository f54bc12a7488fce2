"""A damaged index directory is caught on load with one line that says what to rebuild.

tests/index/test_store.py covers a truncated index.faiss; here: every other file
truncated, files swapped between two indexes of the same shape (so sizes match
and only the checksums can tell), deleted files, metadata of the wrong shape,
damage loaded with ``verify=False``, a pickle planted as embeddings, and the
leftovers of a writer killed between the two renames of a directory swap.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index import IndexIntegrityError, IndexMeta, build_index, load_index, save_index
from index.atomic import file_sha256, recover

N, DIM = 120, 8


def _save(path: Path, seed: int) -> Path:
    vectors = np.random.default_rng(seed).normal(size=(N, DIM)).astype(np.float32)
    meta = IndexMeta(model="m", model_fingerprint="fp", dim=DIM, doc_ids=[f"d{i}" for i in range(N)],
                     corpus_fingerprint=f"corpus{seed}", corpus_source="/data/toy")
    save_index(path, build_index(vectors), meta, vectors)
    return path


@pytest.fixture
def two(tmp_path) -> tuple[Path, Path]:
    return _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_meta(path: Path, change) -> None:
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps(change(meta)))


DAMAGE = {
    "embeddings.npy truncated": (lambda a, b: _truncate(a / "embeddings.npy"), "embeddings.npy: checksum differs"),
    "index.faiss swapped": (lambda a, b: shutil.copy(b / "index.faiss", a / "index.faiss"), "index.faiss: checksum differs"),
    "embeddings.npy swapped": (lambda a, b: shutil.copy(b / "embeddings.npy", a / "embeddings.npy"),
                               "embeddings.npy: checksum differs"),
    "meta.json swapped": (lambda a, b: shutil.copy(b / "meta.json", a / "meta.json"), "checksum differs"),
    "meta.json truncated": (lambda a, b: _truncate(a / "meta.json"), "meta.json: unreadable index metadata"),
    "meta.json empty": (lambda a, b: (a / "meta.json").write_text(""), "meta.json: unreadable index metadata"),
    "meta.json a JSON list": (lambda a, b: (a / "meta.json").write_text("[1, 2]"), "expected a JSON object"),
    "meta.json not UTF-8": (lambda a, b: (a / "meta.json").write_bytes(b"\xff\xfe{"), "unreadable index metadata"),
    "meta.json without checksums": (lambda a, b: _edit_meta(a, lambda m: {**m, "files": {}}), "records no checksum"),
    "meta.json field missing": (lambda a, b: _edit_meta(a, lambda m: {k: v for k, v in m.items() if k != "dim"}),
                                "unreadable index metadata"),
    "meta.json doc_ids not a list": (lambda a, b: _edit_meta(a, lambda m: {**m, "doc_ids": "d0"}), "doc_ids must be"),
    "meta.json checksum path escapes": (
        lambda a, b: _edit_meta(a, lambda m: {**m, "files": {**m["files"], "../b/index.faiss": "0"}}), "inside the index"),
    "index.faiss deleted": (lambda a, b: (a / "index.faiss").unlink(), "index.faiss: missing"),
    "embeddings.npy deleted": (lambda a, b: (a / "embeddings.npy").unlink(), "embeddings.npy: missing"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_detected_on_load_with_one_line_naming_the_rebuild(two, damage):
    a, b = two
    act, expect = DAMAGE[damage]
    act(a, b)
    with pytest.raises(IndexIntegrityError, match=expect) as err:
        load_index(a)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(a))
    assert f"rebuild the index: retrieval index build --data" in message and f"--out {a}" in message


def test_unverified_load_of_a_truncated_faiss_file_is_still_a_one_line_integrity_error(two):
    a, _ = two
    _truncate(a / "index.faiss")
    with pytest.raises(IndexIntegrityError, match="unreadable FAISS index.*rebuild the index") as err:
        load_index(a, verify=False)
    assert "\n" not in str(err.value)


def test_unverified_truncated_embeddings_are_refused_when_read(two):
    a, _ = two
    _truncate(a / "embeddings.npy")
    stored = load_index(a, verify=False)
    with pytest.raises(IndexIntegrityError, match="embeddings.npy: (unreadable|shape)"):
        stored.embeddings()


class _Bomb:
    fired = False

    def __reduce__(self):
        return (_Bomb.fire, ())

    @staticmethod
    def fire():
        _Bomb.fired = True


def test_a_pickle_planted_as_embeddings_is_never_unpickled_even_with_a_matching_checksum(two):
    a, _ = two
    np.save(a / "embeddings.npy", np.array([_Bomb()], dtype=object), allow_pickle=True)
    _edit_meta(a, lambda m: {**m, "files": {**m["files"], "embeddings.npy": file_sha256(a / "embeddings.npy")}})
    stored = load_index(a)  # the checksum matches: only the loader's refusal to unpickle protects us
    with pytest.raises(IndexIntegrityError, match="unreadable"):
        stored.embeddings()
    assert not _Bomb.fired
    assert pickle.dumps(_Bomb())  # the bomb is real: unpickling it would have fired


def test_an_embeddings_file_meta_does_not_record_is_ignored(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(N, DIM)).astype(np.float32)
    meta = IndexMeta(model="m", model_fingerprint="fp", dim=DIM, doc_ids=[f"d{i}" for i in range(N)], corpus_fingerprint="c")
    save_index(tmp_path / "a", build_index(vectors), meta)  # no embeddings saved
    np.save(tmp_path / "a" / "embeddings.npy", vectors)
    assert load_index(tmp_path / "a").embeddings() is None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_writer_killed_between_the_two_renames_leaves_the_old_index_recoverable(two, tmp_path):
    a, _ = two
    pid = _dead_pid()
    old = tmp_path / f".a.old-{pid}-x1"
    stray = tmp_path / f".a.tmp-{pid}-x2"
    a.rename(old)  # the state right after `os.replace(target, old)`, before `os.replace(tmp, target)`
    stray.mkdir()
    (stray / "index.faiss").write_bytes(b"half")
    stored = load_index(a)  # finds the old copy, complete, under the target's name
    assert len(stored) == N and not old.exists() and not stray.exists()


def test_leftovers_of_live_writers_are_not_touched(two, tmp_path):
    a, _ = two
    import os

    mine = tmp_path / f".a.tmp-{os.getpid()}-x"
    mine.mkdir()
    assert recover(a) is False
    assert mine.exists()
