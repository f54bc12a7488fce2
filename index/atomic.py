"""Write files and directories so that a crash never leaves half of one in place.

Everything is written under a temporary name beside its target and renamed into
place (``os.replace`` is atomic on POSIX within one filesystem). A directory is
swapped in with two renames; the old copy is removed only after the new one is
in place, so at every instant either the old or the new artefact is complete.
The project's other packages use these helpers for every artefact they write.

A process killed with SIGKILL cannot clean up, so temporary names carry the
writer's pid (``.NAME.tmp-PID-*``, ``.NAME.old-PID-*``) and the next write of the
same target (or :func:`recover`) removes those whose writer is dead. A kill
between the two renames of a directory swap leaves only the old copy, under its
``.old`` name: :func:`recover` renames it back, so a reader finds the old
artefact, complete, rather than nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(target: Path) -> Iterator[tuple[str, Path]]:
    """``(kind, path)`` for temporary siblings of ``target`` whose writing process is dead."""
    if not target.parent.is_dir():
        return
    for child in target.parent.iterdir():
        for kind in ("tmp", "old"):
            prefix = f".{target.name}.{kind}-"
            if child.name.startswith(prefix):
                pid = child.name[len(prefix) :].split("-", 1)[0]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    yield kind, child


def recover(target: str | os.PathLike) -> bool:
    """Clean up after writers of ``target`` that were killed; return True if an old copy was restored.

    A missing ``target`` with an ``.old`` copy left by a dead writer (killed between
    the two renames of :func:`atomic_dir`) gets that copy back, the newest if several.
    Every other leftover of a dead writer is deleted. Live writers' files are untouched.
    """
    target = Path(target)
    leftovers = list(_leftovers(target))
    restored = False
    olds = sorted((p for kind, p in leftovers if kind == "old"), key=lambda p: p.stat().st_mtime)
    if olds and not os.path.lexists(target):
        os.replace(olds.pop(), target)
        restored = True
    for kind, path in leftovers:
        if path.exists() and (kind == "tmp" or path in olds):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return restored


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        if old is not None and not os.path.lexists(target):
            os.replace(old, target)  # put the old copy back: never leave the target missing
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
