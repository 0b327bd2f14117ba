"""Reading and writing the user's files without surprises.

- :func:`read_text`: regular files only (a FIFO would block forever, ``/dev/zero`` would
  grow memory without limit), at most ``MAX_INPUT_BYTES``, UTF-8; every failure is one
  :class:`InputError` line naming the field.
- :func:`exists`: ``Path.exists`` that answers ``False`` for names the file system refuses
  (too long, embedded NUL) instead of raising.
- :func:`check_out_path`: before any work, that an output file can be created: the suffix,
  each name within the file system's limit, the folder exists, the path is not a folder.
- :func:`atomic_write_text`: write to a temporary file in the same folder, then rename
  (a failed write leaves the previous file intact).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError

MAX_INPUT_BYTES = 16_000_000     # any config, device, profile, prices or measurements file


def short(p, n: int = 80) -> str:
    """A path for a one-line message: long names shortened in the middle."""
    s = str(p)
    return s if len(s) <= n else s[: n // 2 - 2] + "..." + s[-(n // 2 - 1):]


def exists(p) -> bool:
    try:
        return Path(p).exists()
    except (OSError, ValueError):
        return False


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder if folder.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _check_names(field: str, p: Path) -> None:
    limit = _name_max(p.parent)
    for part in p.parts:
        if len(os.fsencode(part)) > limit:
            raise InputError(f"{field}: file name {short(part, 40)} is longer than the "
                             f"file system allows ({limit} bytes)")
    if "\0" in str(p):
        raise InputError(f"{field}: file name contains a NUL character")


def read_text(path, field: str, max_bytes: int = MAX_INPUT_BYTES, what: str = "file") -> str:
    """The text of a regular file of at most ``max_bytes`` bytes (see module docstring)."""
    p = Path(path)
    _check_names(field, p)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{field}: file {short(p)} does not exist") from None
    except OSError as e:
        raise InputError(f"{field}: cannot read {short(p)}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "not a file but a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"{field}: {short(p)} is {kind} (expected a {what})")
    if st.st_size > max_bytes:
        raise InputError(f"{field}: {short(p)} is {st.st_size:,} bytes; at most {max_bytes:,} "
                         f"are read (expected a {what})")
    try:
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"{field}: cannot read {short(p)}: {e.strerror}") from None
    if len(data) > max_bytes:
        raise InputError(f"{field}: {short(p)} is larger than {max_bytes:,} bytes (expected a {what})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{field}: {short(p)} is not UTF-8 text (expected a {what})") from None


def check_out_path(field: str, path, suffixes: tuple[str, ...] | None = None) -> Path:
    """An output path that can be written: checked before the work that produces it."""
    p = Path(path)
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise InputError(f"{field}: file suffix must be one of {', '.join(suffixes)}, got "
                         f"'{short(p.name, 40)}'")
    _check_names(field, p)
    parent = p.parent
    try:
        if p.is_dir():
            raise InputError(f"{field}: {short(p)} is a folder; give a file name")
        if not parent.resolve().is_dir():
            raise InputError(f"{field}: directory {short(parent)} does not exist")
    except OSError as e:
        raise InputError(f"{field}: cannot write {short(p)}: {e.strerror}") from None
    if not os.access(parent.resolve(), os.W_OK):
        raise InputError(f"{field}: directory {short(parent)} is not writable")
    return p


def atomic_write_text(path, text: str, field: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    p = Path(path)
    fd, tmp = None, None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:40]}.", suffix=".tmp", dir=p.parent or ".")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = None
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        tmp = None
    except OSError as e:
        raise InputError(f"{field}: cannot write {short(p)}: {e.strerror}") from None
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
