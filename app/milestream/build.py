"""Which build is running: the compiled one (setup.py, ``MILESTREAM_COMPILE=1``) or pure Python."""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES


def compiled_modules() -> list[str]:
    """The loaded ``milestream`` modules that are C extensions; empty in the pure-Python build."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("milestream.") and str(getattr(module, "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES))
    )


def describe() -> str:
    """One line for logs and benchmark reports."""
    # The engine is imported here so that the answer does not depend on what the caller loaded.
    from .engine import core  # noqa: F401
    from .pipeline import topology  # noqa: F401
    from .state import base  # noqa: F401

    compiled = compiled_modules()
    return f"compiled ({len(compiled)} modules loaded compiled)" if compiled else "pure Python"
