import os
from pathlib import Path

import pytest
import torch


@pytest.fixture
def seed() -> int:
    torch.manual_seed(1234)
    return 1234


@pytest.fixture
def gmb_path() -> Path:
    """The GMB corpus named by NERBILSTM_DATA; tests that need it skip without it."""
    value = os.environ.get("NERBILSTM_DATA")
    if not value:
        pytest.skip("NERBILSTM_DATA is not set: point it at the Kaggle GMB ner_dataset.csv to run this test")
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"NERBILSTM_DATA={value} is not a file")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one intra-op thread, and leave the other core to the rest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
