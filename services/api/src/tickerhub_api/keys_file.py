"""API keys from a file (``API_KEYS_FILE``): Docker secrets and Kubernetes Secret volumes
hand secrets over as files, and a key in a file stays out of ``docker inspect``, the
pod spec and ``/proc/<pid>/environ``.

Format: one key per line, or several on a line separated by commas (so an
``API_KEYS`` value pasted into the file works as it is). Blank lines and lines
whose first non-blank character is ``#`` are ignored; there are no end-of-line
comments, because a key may contain ``#`` (just not start with it).

Errors are ``ValueError``s that name the file and the line, never the key: the
settings loader prints them as one line and exits 2.
"""

from __future__ import annotations

from pathlib import Path

from tickerhub_api.access import check_key_syntax

# A keys file is a handful of lines; anything bigger is the wrong file (a binary, a
# log) and reading it whole would only waste memory before failing anyway.
MAX_FILE_BYTES = 1024 * 1024


def parse_keys(text: str) -> list[str]:
    """The keys in a keys file's text, in order, duplicates dropped; ValueError on a bad one."""
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        for item in stripped.split(","):
            key = item.strip()
            if not key:
                continue
            try:
                check_key_syntax(key)
            except ValueError as exc:
                raise ValueError(f"line {number}: {exc}") from None
            if key not in keys:
                keys.append(key)
    return keys


def read_keys_file(path: str) -> list[str]:
    """The keys in ``path``; ValueError if it is missing, unreadable, too big or holds none.

    An empty file is an error rather than "no keys": whoever points the api at a keys
    file means the api to need a key, and a Secret mounted empty by mistake must not
    quietly open it.
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not a keys file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    try:
        keys = parse_keys(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not keys:
        raise ValueError(
            f"{path}: holds no key (one per line; blank lines and # comments are ignored)"
        )
    return keys
