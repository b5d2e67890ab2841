"""Files that are either complete or absent: written to a temporary name, flushed to disk,
then renamed over the final name (``os.replace`` is atomic on POSIX and Windows). A crash
or kill while writing leaves the previous version, never a truncated file."""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator, List

#: the name atomic_path gives a temporary: .<final name>.<pid>.tmp
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write the file there. On a clean exit it is
    fsynced and renamed to ``path`` (and the folder fsynced); on an error it is removed."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # see _TEMPORARY
    try:
        yield temporary
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    fsync_folder(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk (the file is never rewritten)."""
    with open(path, "a", encoding="utf-8", newline="") as stream:
        stream.write(line if line.endswith("\n") else line + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_stale_temporaries(folder: str | os.PathLike) -> List[Path]:
    """Remove the temporaries that killed writers left in ``folder`` (``.<name>.<pid>.tmp``
    of a process that no longer runs, or of this process: call it while this process has no
    write in flight); returns the removed paths. A running process's temporary is kept."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or not entry.is_file() or _is_running_other(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed


def _is_running_other(pid: int) -> bool:
    """Whether ``pid`` is a running process other than this one (POSIX; elsewhere: assumed so)."""
    if pid == os.getpid():
        return False
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # PermissionError: another user's running process
    return True
