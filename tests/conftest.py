"""Fixtures shared by every test folder: real servers on free ports in temporary folders."""

pytest_plugins = [
    "tests.fixtures.redis",
]
