"""Find a dataset from what the user typed: a folder, a Hugging Face dataset, or a BEIR name.

Resolution order for a bare name such as ``scifact``:

1. ``--data`` itself, when it is an existing folder (BEIR layout or ``save_to_disk``);
2. ``$RETRIEVAL_DATA/<name>`` (or ``$RETRIEVAL_DATA/beir/<name>``);
3. the cache, ``$RETRIEVAL_CACHE/datasets/<name>`` (default ``~/.cache/retrieval``);
4. a download of ``<name>.zip`` from BEIR's public archive into that cache.

``hf:<repo>`` loads a dataset from the Hugging Face hub (``hf.py``).
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from index.atomic import atomic_dir, atomic_path
from retrieval.data import Dataset, load_beir
from retrieval.errors import DataError

logger = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"


def cache_dir() -> Path:
    return Path(os.environ.get("RETRIEVAL_CACHE", Path.home() / ".cache" / "retrieval"))


def _is_saved_hf(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "corpus" / "dataset_info.json").exists()


def load_folder(folder: Path, strict: bool = False, name: str | None = None) -> Dataset:
    if _is_saved_hf(folder):
        from retrieval.hf import load_saved

        return load_saved(folder, strict=strict, name=name)
    from retrieval.userdata import is_user_folder, load_user_folder

    if is_user_folder(folder):
        return load_user_folder(folder, strict=strict, name=name)
    return load_beir(folder, strict=strict, name=name)


def candidates(name: str) -> list[Path]:
    """Where a bare dataset name is looked for, in order (before any download)."""
    places = []
    if os.environ.get("RETRIEVAL_DATA"):
        root = Path(os.environ["RETRIEVAL_DATA"])
        places += [root / name, root / "beir" / name]
    places.append(cache_dir() / "datasets" / name)
    return places


def resolve(spec: str, strict: bool = False, download: bool = True) -> Dataset:
    """Turn ``--data`` into a :class:`Dataset` (see the module docstring for the order)."""
    if spec.startswith("hf:"):
        from retrieval.hf import load_hub

        return load_hub(spec[3:], strict=strict)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_folder(path, strict=strict)
    if path.exists():
        raise DataError(f"{path}: --data must be a dataset folder or a dataset name, not a file")
    if "/" in spec or spec.startswith("."):
        raise DataError(f"{spec}: no such folder")
    for place in candidates(spec):
        if place.is_dir():
            return load_folder(place, strict=strict, name=spec)
    if not download:
        raise DataError(_not_found(spec, "downloads disabled"))
    return load_folder(fetch_beir(spec), strict=strict, name=spec)


def _not_found(name: str, why: str) -> str:
    looked = ", ".join(str(p) for p in candidates(name))
    env = "" if os.environ.get("RETRIEVAL_DATA") else " ($RETRIEVAL_DATA is not set)"
    return (
        f"dataset {name!r} not found: looked in {looked}{env}; download failed ({why}). "
        f"Pass --data DIR with a BEIR folder, set RETRIEVAL_DATA to a folder holding {name}/, "
        f"or go online so it can be downloaded from {_url(name)}"
    )


def _url(name: str) -> str:
    return f"{os.environ.get('RETRIEVAL_BEIR_URL', BEIR_URL).rstrip('/')}/{name}.zip"


def fetch_beir(name: str) -> Path:
    """Download and unpack a BEIR dataset into the cache; return its folder."""
    target = cache_dir() / "datasets" / name
    url = _url(name)
    logger.info("downloading %s", url)
    try:
        with atomic_path(target.parent / f"{name}.zip") as zip_path:
            _download(url, zip_path)
            with atomic_dir(target) as tmp, zipfile.ZipFile(zip_path) as archive:
                archive.extractall(tmp)
                inner = tmp / name
                if inner.is_dir():  # BEIR zips hold one folder named like the dataset
                    for child in inner.iterdir():
                        child.rename(tmp / child.name)
                    inner.rmdir()
    except (urllib.error.URLError, OSError, zipfile.BadZipFile) as err:
        raise DataError(_not_found(name, str(getattr(err, "reason", err)))) from None
    return target


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {url.rsplit('/', 1)[-1]}") as bar:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                bar.update(len(chunk))
