"""Indexer test helpers: a copy of the tiny fixture course per test, settings aimed at temp folders,
and a guard that fails any connection to a non-loopback address (nothing may reach the internet)."""

from __future__ import annotations

import ipaddress
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.settings import Settings

FIXTURE_COURSE = Path(__file__).parent / "fixtures" / "bio110"


class InternetAccess(AssertionError):
    """A test tried to leave the machine."""


def _loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths are local


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every indexer test runs with connections to anything but loopback refused, and fails afterwards
    if one was even attempted (a library might swallow the refusal, e.g. a telemetry or model download)."""
    attempts: list[object] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: object) -> None:
        if not _loopback(address):
            attempts.append(address)
            raise InternetAccess(f"test tried to connect to {address!r}")

    def connect(self: socket.socket, address: object) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    assert attempts == [], f"non-loopback connections attempted: {attempts}"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A corpus folder holding a fresh copy of the fixture course ``bio110``."""
    folder = tmp_path / "corpus"
    shutil.copytree(FIXTURE_COURSE, folder / "bio110")
    return folder


def settings_for(corpus: Path, data_dir: Path, **overrides: object) -> Settings:
    """Settings aimed at temp folders and the session's Chroma server, with no Redis unless asked.

    Tests share one Chroma server and reuse the collection name ``course-bio110``; that is safe because
    a build whose manifest disagrees with the collection's size starts the collection afresh.
    """
    values: dict[str, object] = {
        "corpus_dir": str(corpus),
        "data_dir": str(data_dir),
        "redis_url": "",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_settings(tmp_path: Path, corpus: Path, chroma_url: str) -> Callable[..., Settings]:
    """Settings for this test's copy of the fixture course."""
    return lambda **overrides: settings_for(
        corpus, tmp_path / "data", **{"chroma_url": chroma_url, **overrides}
    )
