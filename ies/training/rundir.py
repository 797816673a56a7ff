"""Run folders that never lose a finished run: checks before a run starts, atomic replacement of its files.

- :func:`check_output` (before anything is loaded or written): ``output`` must be a folder that can be
  written (not a file, not under a file, not read-only); a new run (no ``resume``) into a folder that
  holds another run's files (:data:`RUN_FILES`) is refused with one line naming ``--resume`` and
  ``--overwrite``, so that the folder stays byte for byte as it was.
- :func:`atomic_write_text` and :func:`remove_stale` serve :class:`ies.training.history.RunFolder`: every file of a
  run is replaced atomically (a temporary file beside it, ``fsync``, rename), so a kill at any moment
  leaves the previous version or the new one, never a torn file; the temporary files a kill leaves behind
  are removed when the next run starts in the folder.
- With ``overwrite``, the old run's files stay until the new run has finished its first epoch; then
  they are replaced (``history.csv``, ``metrics.json``) or removed (the others, before the new ones are
  written). A run that fails before its first epoch leaves the folder as it was; one that fails later
  leaves the complete record of its own epochs.

Imports only the standard library and :mod:`ies.training.checkpoint`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import checkpoint as ckpt
from .faults import InputError

RUN_FILES = ("history.csv", "metrics.json", ckpt.CHECKPOINT_NAME, "groups.csv", "groups_summary.csv")
"""The files a run writes into its folder (a sweep adds its own, :mod:`ies.experiments.sweep.cache`)."""


class RunFolderError(InputError):
    """``output`` cannot hold this run (one line, exit 2)."""


def held_files(path: str | os.PathLike) -> list[str]:
    """The :data:`RUN_FILES` that folder ``path`` holds."""
    return [name for name in RUN_FILES if (Path(path) / name).exists()]


def check_output(path: str | os.PathLike, resume: bool = False, overwrite: bool = False, probe: bool = True) -> None:
    """``RunFolderError`` unless ``path`` can be a run's folder: a folder (or a path to create one) that
    this process can write; for a new run (not ``resume``) one that holds no other run's files, or
    ``overwrite``. Writes nothing that stays: the write test's file and any folder it created are removed.
    ``probe=False``: no write test (the ranks of a run on several processes that do not write: their
    test would race with the writing rank's)."""
    out = Path(path)  # as RunFolder writes it
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"output {out} exists and is not a folder; expected a folder for the run's files")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"output {out} lies under {existing}, which is not a folder; expected a folder path")
    if probe:
        _probe(out, existing)
    held = held_files(out)
    if resume and held and ckpt.CHECKPOINT_NAME not in held:  # killed before its first checkpoint
        raise FileNotFoundError(f"no checkpoint at {out / ckpt.CHECKPOINT_NAME}: nothing to resume (the folder "
                                f"holds {', '.join(held)}; start the run anew there with --overwrite)")
    if held and not resume and not overwrite:
        raise RunFolderError(f"output {out} already holds a run ({', '.join(held)}); continue it with --resume "
                             "(resume=True), replace it with --overwrite (overwrite=True), or choose another folder")


def _probe(out: Path, existing: Path) -> None:
    """Create ``out`` and a file in it, then remove both (as far as they were created here)."""
    created = []
    try:
        for folder in reversed([out, *out.parents][: len(out.parts) - len(existing.parts)]):
            folder.mkdir()
            created.append(folder)
        fd, name = tempfile.mkstemp(dir=out, prefix=".ies-write-test.")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise RunFolderError(f"output {out} cannot be written ({e.strerror or e}); expected a folder this "
                             "process can create and write") from None
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (:func:`ies.training.checkpoint.atomic_write_bytes`)."""
    ckpt.atomic_write_bytes(Path(path), lambda f: f.write(text.encode()))


def remove_stale(path: str | os.PathLike) -> None:
    """Remove the temporary files that writes killed half-way left in folder ``path``
    (``.<name>.*.tmp`` of :func:`ies.training.checkpoint.atomic_write_bytes`, for every name of :data:`RUN_FILES`)."""
    folder = Path(path)
    if folder.is_dir():
        for name in RUN_FILES:
            for tmp in folder.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)


def remove_run_files(path: str | os.PathLike, keep: tuple[str, ...] = ()) -> None:
    """Remove the :data:`RUN_FILES` of folder ``path`` but ``keep`` (the checkpoint first: a kill
    half-way leaves part of the old run, never a mix of two)."""
    for name in (ckpt.CHECKPOINT_NAME, *RUN_FILES):
        if name not in keep:
            (Path(path) / name).unlink(missing_ok=True)
