"""Build hook for the optional compiled build.

``MILESTREAM_COMPILE=1 pip install .`` compiles the per-record path (the engine, the pipeline and the
state stores) to C extensions with mypyc, from the same typed sources; without it the package is pure
Python. Everything else (the worker's services, the API, the CLI) stays interpreted either way. See
README.md, "The compiled build".
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

# Left interpreted: keys.py builds its keys through the class's slot descriptors (the fastest way in
# CPython, impossible in a compiled class). Package __init__ files have nothing to compile.
INTERPRETED = {"app/milestream/state/keys.py"}
COMPILED_PACKAGES = ("engine", "pipeline", "state")
ROOT = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The modules to compile, as paths from the repository's root (whatever the current directory)."""
    paths = (
        path.relative_to(ROOT).as_posix()
        for package in COMPILED_PACKAGES
        for path in sorted((ROOT / "app" / "milestream" / package).glob("*.py"))
    )
    return [path for path in paths if not path.endswith("/__init__.py") and path not in INTERPRETED]


def extensions() -> list:
    if os.environ.get("MILESTREAM_COMPILE", "") != "1":
        return []
    from mypyc.build import mypycify

    return mypycify(["--ignore-missing-imports", *compiled_modules()], opt_level="3")


if __name__ == "__main__":  # setuptools runs this file as a script; tests import compiled_modules()
    setup(ext_modules=extensions())
