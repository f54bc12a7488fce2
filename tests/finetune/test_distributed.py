"""Two CPU processes (torchrun, gloo) train the tiny model through SentenceTransformerTrainer.

Candidates are gathered across processes, so every query sees the global batch; DDP keeps the
weights (and the learnable temperature, which lives in the loss) identical on both ranks. SigLIP
(and NCE) score each rank's own batch; the bias fitted on its first batch is averaged over the ranks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ddp_train.py")
REPO = Path(__file__).resolve().parents[2]


def torchrun(model_dir: Path, out: Path, kind: str) -> list[dict]:
    out.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               str(SCRIPT), str(model_dir), str(out), kind]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize("kind", ["plain", "cached"])
def test_two_processes_gather_candidates_learn_and_end_with_identical_weights(tiny_model_path, tmp_path, kind):
    from tests.finetune.ddp_train import PER_DEVICE_BATCH, STEPS

    ranks = torchrun(tiny_model_path, tmp_path / "out", kind)
    for result in ranks:
        assert result["world_size"] == 2
        assert len(result["steps"]) == STEPS
        assert all(step["n_candidates"] == 2 * PER_DEVICE_BATCH for step in result["steps"])
        assert result["after"] < result["before"]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["temperature"] == ranks[1]["temperature"]
    if kind == "plain":
        assert ranks[0]["temperature"] != pytest.approx(0.05, abs=1e-7)  # it was learnt, and in step


@pytest.mark.parametrize("kind", ["siglip-fit", "nce-fit"])
def test_a_fitted_bias_is_one_bias_for_both_processes(tiny_model_path, tmp_path, kind):
    """Each rank fits the bias on a different first batch; both start, and end, from their mean."""
    ranks = torchrun(tiny_model_path, tmp_path / "out", kind)
    assert ranks[0]["fitted_init_bias"] is not None
    assert ranks[0]["fitted_init_bias"] == ranks[1]["fitted_init_bias"]
    assert ranks[0]["bias"] == ranks[1]["bias"] != ranks[0]["fitted_init_bias"]  # then learnt, in step
    assert ranks[0]["digest"] == ranks[1]["digest"]
