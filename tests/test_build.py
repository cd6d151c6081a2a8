"""The compiled build compiles what setup.py lists, and the pure build nothing.

``make test-compiled`` runs this with ``MILESTREAM_EXPECT_COMPILED=1`` against the compiled build; a
build that silently came out pure Python (or compiled only part of the list) fails here."""

import importlib
import importlib.util
import os
from pathlib import Path

from milestream import build

ROOT = Path(__file__).resolve().parents[1]


def listed_in_setup() -> list[str]:
    spec = importlib.util.spec_from_file_location("milestream_setup", ROOT / "setup.py")
    assert spec and spec.loader
    setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup)
    return [path.removeprefix("app/").removesuffix(".py").replace("/", ".") for path in setup.compiled_modules()]


def test_the_build_compiles_exactly_the_modules_setup_lists():
    listed = listed_in_setup()
    assert "milestream.engine.core" in listed and "milestream.state.keys" not in listed
    for name in listed:
        importlib.import_module(name)
    loaded_compiled = set(build.compiled_modules())
    if os.environ.get("MILESTREAM_EXPECT_COMPILED") == "1":
        assert loaded_compiled == set(listed)
        assert build.describe().startswith("compiled")
    else:
        assert loaded_compiled == set()
        assert build.describe() == "pure Python"
