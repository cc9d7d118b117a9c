"""Shared pieces for the fine-tuning tests: the sample course packs and a small generated batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from finetune.conversation import Conversation
from finetune.generate import generate
from finetune.personas import Matrix, load_matrix
from services.coursepack import Catalog, load_catalog
from services.settings import REPO_ROOT, Settings


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(REPO_ROOT / "corpus")


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    return load_matrix()


@pytest.fixture(scope="session")
def conversations(catalog: Catalog, matrix: Matrix) -> list[Conversation]:
    """16 personas (two of each style) x 1 conversation, through the gateway's real Interviewer."""
    return asyncio.run(generate(catalog, matrix, Settings(data_dir=str(Path("/nonexistent"))), 16, 1))
