"""Shared pieces for the fine-tuning tests: the course packs, the training courses and a generated batch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from finetune.conversation import Conversation
from finetune.generate import generate
from finetune.personas import Matrix, load_matrix, training_catalog
from services.coursepack import Catalog, load_catalog
from services.settings import REPO_ROOT, Settings


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The course packs under corpus/, held-out evaluation course included."""
    return load_catalog(REPO_ROOT / "corpus")


@pytest.fixture(scope="session")
def training(catalog: Catalog) -> Catalog:
    """The courses training data is made from: the packs minus the held-out ones, plus the skeletons."""
    return training_catalog(catalog)


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    return load_matrix()


@pytest.fixture(scope="session")
def conversations(catalog: Catalog, matrix: Matrix) -> list[Conversation]:
    """28 personas (a course each, every style) x 1 conversation, through the gateway's real Interviewer."""
    return asyncio.run(generate(catalog, matrix, Settings(data_dir=str(Path("/nonexistent"))), 28, 1))
