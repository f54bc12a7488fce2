"""Dataset names resolve from RETRIEVAL_DATA, then the cache, then a download; offline errors list every option."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from retrieval.errors import DataError
from retrieval.sources import resolve


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("RETRIEVAL_DATA", raising=False)
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RETRIEVAL_BEIR_URL", (tmp_path / "nowhere").as_uri())


def test_name_resolves_from_retrieval_data(monkeypatch, beir_dir):
    monkeypatch.setenv("RETRIEVAL_DATA", str(beir_dir.parent))
    assert resolve("toy").name == "toy"


def test_name_resolves_from_beir_subfolder_of_retrieval_data(monkeypatch, beir_dir, tmp_path):
    shutil.copytree(beir_dir, tmp_path / "root" / "beir" / "toy")
    monkeypatch.setenv("RETRIEVAL_DATA", str(tmp_path / "root"))
    assert len(resolve("toy").corpus) == 24


def test_offline_error_lists_every_place_and_option(tmp_path):
    with pytest.raises(DataError) as err:
        resolve("scifoo")
    message = str(err.value)
    assert "dataset 'scifoo' not found" in message
    assert str(tmp_path / "cache" / "datasets" / "scifoo") in message
    assert "RETRIEVAL_DATA is not set" in message and "--data DIR" in message and "scifoo.zip" in message
    assert not (tmp_path / "cache" / "datasets" / "scifoo").exists()


def test_download_unpacks_into_the_cache_and_is_reused(monkeypatch, beir_dir, tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    with zipfile.ZipFile(server / "toy.zip", "w") as archive:
        for path in beir_dir.rglob("*"):
            archive.write(path, f"toy/{path.relative_to(beir_dir)}")
    monkeypatch.setenv("RETRIEVAL_BEIR_URL", server.as_uri())
    assert len(resolve("toy").corpus) == 24
    assert (tmp_path / "cache" / "datasets" / "toy" / "corpus.jsonl").exists()
    (server / "toy.zip").unlink()
    assert len(resolve("toy").corpus) == 24  # second time from the cache


def test_a_file_is_not_a_dataset(beir_dir):
    with pytest.raises(DataError, match="must be a dataset folder"):
        resolve(str(beir_dir / "corpus.jsonl"))
