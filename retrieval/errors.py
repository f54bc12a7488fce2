"""The two errors a user can fix without reading a traceback.

Both are raised anywhere below the command line (readers, sources, fine-tuning,
config checks) with a message that is already the whole explanation, on one line.
The command line (``cli.main``) catches them, together with the index's
``IndexMismatchError``/``IndexIntegrityError`` and ``FileNotFoundError``, prints
``error: <message>`` to stderr and exits with status 2; anything else is a bug and
keeps its traceback. Keep messages to one line (escape newlines from user data,
see :func:`retrieval.readers.one_line`) so that the printed error stays one line.

This module imports nothing, so every floor above ``index`` (``retrieval``,
``finetune``, the commands, the app) can raise and catch these without importing
the command layer.
"""

from __future__ import annotations

__all__ = ["DataError", "UsageError"]


class DataError(ValueError):
    """Bad input data; the message names the file (and line) and what is wrong.

    ``path:line: what`` for a fault on one line (malformed JSON, a missing field, a
    duplicate id), ``path: what`` for a fault of the whole file or folder (empty
    corpus, no qrels for the split, a run directory that points outside itself).
    The fix is in the data, not in the flags.
    """


class UsageError(ValueError):
    """A flag, setting or combination of them that cannot work; the message says which.

    Names the offending option(s) as the user wrote them (``--loss triplet needs
    --num-negatives >= 1``, ``--precision fp16 needs a CUDA GPU``, an unknown key in
    a ``--config`` file). The fix is in the command line or config file, not in the data.
    """
