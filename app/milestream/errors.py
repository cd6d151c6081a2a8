"""The error a command reports as one line (no traceback), with exit status 2."""

from __future__ import annotations


class UsageError(ValueError):
    """A user's mistake in a command's input: a file, an option, a setting, an unreachable broker."""


def read_text_file(path: str, option: str) -> str:
    """A UTF-8 text file named by a command-line option; a ``UsageError`` if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option} {path}: not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})") from None
