"""``bench/gpu.sh`` and ``bench/gpu.py`` on a machine without CUDA: the CPU fallback runs every step and says so.

The GPU bench is run whenever a GPU is lent, which is rare; these tests keep the script
working in between. The fallback runs the same steps as on CUDA (base index, encoding,
faiss search, full- and query-mode training) in float32 on the tiny model and toy data,
and must label every number as a CPU fallback, never as a GPU measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_falls_back_to_float32_on_cpu_and_labels_every_number(beir_dir, tiny_model_path, tmp_path):
    """``bench/gpu.sh`` as the device tool runs it, minus the GPU: this environment as it is (GPU_WHEELS=0, even where
    ``bench/gpu_prepare.sh`` left wheels in .gpu/), data and model from the env."""
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_DATA": str(beir_dir), "GPU_MODEL": str(tiny_model_path),
           "GPU_ARGS": "--batch-size 8 --skip-job", "CUDA_VISIBLE_DEVICES": "", "GPU_WHEELS": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "## GPU bench: CPU fallback" in done.stdout
    assert (out / "gpu.md").read_text().strip() in (out / "log.txt").read_text(), "the log keeps the printed table"
    numbers = json.loads((out / "gpu.json").read_text())
    assert numbers["device"].startswith("CPU fallback") and numbers["precision"] == "fp32"
    assert numbers["documents"] == 24
    assert set(numbers["encode_docs_per_s"]) == {"fp32"}, "no bf16 row without CUDA: the CPU fallback is float32"
    assert numbers["encode_docs_per_s"]["fp32"] > 0
    assert numbers["faiss"]["cpu_qps"] > 0 and "gpu_qps" not in numbers["faiss"]
    for mode in ("full", "query"):
        assert numbers["train"][mode]["pairs_per_second"] > 0, mode
        assert (out / f"train-{mode}").is_dir(), mode
    table = (out / "gpu.md").read_text()
    assert table.startswith("## GPU bench: CPU fallback: no CUDA device, float32")
    assert "training pairs/s, full mode (fp32, batch 8)" in table
    assert "faiss flat search on GPU | not run" in table
    assert "main job" not in table  # --skip-job
