"""SIGKILL while an index is written: the target holds the old index or the new one, whole, never a mix.

Two levels. ``save_index`` is run in a tight loop by a child process that is
killed at random moments, most of them while files are being written or swapped;
after each kill the target must load with every checksum valid and hold exactly
one of the two indexes the loop alternates between. Then the real path: a child
indexes a generated corpus with the tiny model (``build_or_load``), replacing an
older index, and is killed while encoding; the old index must still be there,
whole, and a rerun must give the index an uninterrupted run gives. Killing during
fine-tuning is tests/jobs/test_tune_job.py's job.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index import IndexMeta, build_index, load_index, save_index

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}

SAVE_LOOP = """
import sys
import numpy as np
from index import IndexMeta, build_index, save_index

target, rounds = sys.argv[1], int(sys.argv[2])
N, DIM = 20000, 64
contents = []
for k in range(2):
    v = np.random.default_rng(k).normal(size=(N, DIM)).astype(np.float32)
    contents.append((v, [f"v{k}-{j}" for j in range(N)]))
i = 0
while rounds < 0 or i < rounds:
    v, ids = contents[i % 2]
    meta = IndexMeta(model="m", model_fingerprint="fp", dim=DIM, doc_ids=ids, corpus_fingerprint=f"c{i % 2}")
    save_index(target, build_index(v), meta, v)
    if i == 0:
        print("ready", flush=True)
    i += 1
"""

BUILD = """
import sys
import torch
from sentence_transformers import SentenceTransformer
from retrieval.retriever import IndexSpec, build_or_load

model_path, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
words = "cats purr and sleep on warm windows dogs bark fetch sticks in the park sun is a star moon orbits earth".split()
corpus = {f"d{i}": {"title": words[i % len(words)], "text": " ".join(words[(i * 7 + j) % len(words)] for j in range(12 + i % 9))}
          for i in range(n)}
torch.set_num_threads(1)  # two intra-op threads on busy shared cores run ~30x slower; one is also deterministic
model = SentenceTransformer(model_path, device="cpu")
print("encoding", flush=True)
build_or_load(model, "tiny", corpus, target, IndexSpec(batch_size=64), progress=False)
print("done", flush=True)
"""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _wait_for(proc: subprocess.Popen, marker: str) -> None:
    line = proc.stdout.readline()
    assert line.strip() == marker, f"child said {line!r} (exit {proc.poll()})"


def test_killed_while_saving_the_target_always_holds_one_whole_index(tmp_path):
    target = tmp_path / "idx"
    rng = random.Random(0)
    seen = set()
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(target), "-1"], env=ENV,
                                stdout=subprocess.PIPE, text=True)
        _wait_for(proc, "ready")
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stored = load_index(target)  # verifies every checksum; restores the old copy if killed mid-swap
        k = int(stored.meta.doc_ids[0][1])
        seen.add(k)
        expected = np.random.default_rng(k).normal(size=(20000, 64)).astype(np.float32)
        assert stored.meta.doc_ids == [f"v{k}-{j}" for j in range(20000)]
        np.testing.assert_allclose(stored.vectors(), expected / np.linalg.norm(expected, axis=1, keepdims=True),
                                   rtol=1e-5, atol=1e-6)
    subprocess.run([sys.executable, "-c", SAVE_LOOP, str(target), "1"], env=ENV, check=True, stdout=subprocess.DEVNULL)
    assert _leftovers(tmp_path) == []  # what killed writers left behind is cleared by the next write


def _build(model: Path, target: Path, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILD, str(model), str(target), str(n)], env=ENV,
                            stdout=subprocess.PIPE, text=True)


def test_killed_while_indexing_keeps_the_old_index_and_the_rerun_equals_an_uninterrupted_run(tiny_model_path, tmp_path):
    n = 20000  # a few seconds of encoding (about 5000 documents a second on one core)
    reference, target = tmp_path / "reference", tmp_path / "target"
    ref = _build(tiny_model_path, reference, n)
    vectors = np.random.default_rng(0).normal(size=(50, 32)).astype(np.float32)
    save_index(target, build_index(vectors), IndexMeta(model="older", model_fingerprint="x", dim=32,
                                                       doc_ids=[f"old{i}" for i in range(50)], corpus_fingerprint="y"), vectors)
    proc = _build(tiny_model_path, target, n)  # replaces the older index, which does not match
    _wait_for(proc, "encoding")  # killed at once: 20000 documents are still to encode and index
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ref.wait(timeout=300) == 0
    assert still_running, "the build finished before it could be killed mid-indexing"
    survivor = load_index(target)
    assert survivor.meta.doc_ids == [f"old{i}" for i in range(50)]  # the old index, whole (checksums verified)

    assert _build(tiny_model_path, target, n).wait(timeout=300) == 0
    assert _leftovers(tmp_path) == []
    got, want = load_index(target), load_index(reference)
    assert got.meta.doc_ids == want.meta.doc_ids and got.meta.model_fingerprint == want.meta.model_fingerprint
    np.testing.assert_allclose(got.vectors(), want.vectors(), rtol=0, atol=1e-6)
    queries = np.asarray(want.vectors()[:: n // 25])
    assert got.search(queries, 10)[0] == want.search(queries, 10)[0]


def _user_folder(folder: Path) -> Path:
    """corpus.jsonl + pairs.jsonl over the tiny model's vocabulary (as in tests/jobs/test_tune_job.py)."""
    import json

    from tests.conftest import TOPICS

    folder.mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for topic, sentence in TOPICS.items():
            for i in range(3):
                f.write(json.dumps({"_id": f"{topic}{i}", "title": topic, "text": f"{sentence} number {i}"}) + "\n")
    with open(folder / "pairs.jsonl", "w") as f:
        for topic, sentence in TOPICS.items():
            words = sentence.split()
            for i in range(5):
                f.write(json.dumps({"query": " ".join(words[i % len(words) :][:3]) + f" {topic} {i}", "doc_id": f"{topic}{i % 3}"}) + "\n")
    return folder


def _losses(out: Path) -> dict[int, float]:
    import json

    state = max((out / "checkpoints").glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    return {row["step"]: row["loss"] for row in json.loads(state.read_text())["log_history"] if "loss" in row}


def test_training_resumed_after_a_kill_logs_the_same_losses_as_an_uninterrupted_run(tiny_model_path, tmp_path):
    """No jump in the loss: every logged loss, before and after the resume point, equals the uninterrupted run's.

    The tolerance, 1e-4, is far below what a faulty resume would show: the loss
    falls from about 1.6 to a few tenths over this run, so restarting from step 0, or
    resuming weights without the optimizer's moments, the scheduler or the data
    order, moves the losses after the resume point by 0.01 to 1. A correct resume
    (HF Trainer restores all of these and the RNG states) repeats the same CPU
    computation; on this machine the losses were bit-identical.
    """
    data = _user_folder(tmp_path / "user")

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "cli", "finetune", "--data", str(data), "--base", str(tiny_model_path),
                "--out", str(out), "--epochs", "4", "--batch-size", "4", "--precision", "fp32", "--evals-per-epoch", "2",
                "--learning-rate", "1e-3"]

    whole = subprocess.run(cmd(tmp_path / "whole"), env=ENV, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed_from = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    again = subprocess.run(cmd(out), env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "resuming from" in again.stderr, again.stderr[-2000:]

    want, got = _losses(tmp_path / "whole"), _losses(out)
    assert resumed_from < max(want)  # the kill landed mid-training: some steps ran only after the resume
    assert sorted(got) == sorted(want)
    assert all(abs(got[s] - want[s]) <= 1e-4 for s in want), {s: (got[s], want[s]) for s in want if s > resumed_from}
