#!/usr/bin/env bash
# Stage what bench/gpu.sh needs on a GPU machine that can fetch nothing: .gpu/ (add "/.gpu/" to .git/info/exclude).
#   whl/    wheels of the packages the GPU image lacks (cp312, manylinux x86-64), no dependencies resolved there
#   model/  the base model, weights in float16 (the device tool carries at most 64 MiB)
#   data/   SciFact from ../shared/data/beir
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/whl .gpu/data
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
# ranx imports ir_datasets (and cbor2, lz4, orjson, fastparquet) at import time; datasets needs dill and multiprocess
for pkg in faiss-cpu ranx bm25s PyStemmer cbor2 lz4 orjson fastparquet cramjam ir-datasets inscriptis trec-car-tools cbor \
           ijson unlzw3 warc3-wet warc3-wet-clueweb09 zlib-state beautifulsoup4 soupsieve datasets dill multiprocess; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .gpu/whl "$pkg" \
        || echo "skipped $pkg (no cp312 manylinux wheel)"
done
python3 - <<'PY'
from pathlib import Path
import torch
from sentence_transformers import SentenceTransformer
from retrieval.models import resolve_model_path
model = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu").half()
model.save(".gpu/model")
print("model:", sum(p.stat().st_size for p in Path(".gpu/model").rglob("*") if p.is_file()) // 2**20, "MiB")
PY
cp -r ../shared/data/beir/scifact .gpu/data/
du -sh .gpu/* ; echo "carry .gpu (the device tool's limit is 64 MiB in all)"
