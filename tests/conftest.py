"""Fixtures shared by every test folder: real servers on free ports in temporary folders.

Every module in ``tests/fixtures/`` is a pytest plugin, so a new fixture module needs no registration.
"""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)
