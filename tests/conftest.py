import logging
import os
import sys
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


class Run:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        self.err_lines = err.splitlines()


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``main(argv)`` and return what a user sees: exit code, stdout, and stderr with the
    log records the command writes there (at INFO, as the CLI configures logging)."""
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)

    def run(argv):
        capsys.readouterr()
        handler = logging.StreamHandler(sys.stderr)  # the captured stderr
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root_logger = logging.getLogger()
        level = root_logger.level
        root_logger.addHandler(handler)
        root_logger.setLevel(logging.INFO)
        from nerbilstm.cli import main

        try:
            rc = main([str(a) for a in argv])
        finally:
            root_logger.removeHandler(handler)
            root_logger.setLevel(level)
        cap = capsys.readouterr()
        return Run(rc, cap.out, cap.err)

    return run
