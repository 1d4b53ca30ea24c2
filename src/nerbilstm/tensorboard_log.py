"""TensorBoard event files for a training run (``--tensorboard DIR``; the optional extra ``tensorboard``).

Per epoch (step = epoch number) the scalars of the epoch's train_log.jsonl line (SCALARS); at
the end the run's hyperparameters with its final dev and test figures, for TensorBoard's
hparams view. The JSONL log is written as before: this is a second view of the same numbers.
The ``tensorboard`` package is imported only when a run asks for it, so the package works
without it; training writes these files from rank 0 only.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from nerbilstm.config import ConfigError

log = logging.getLogger("nerbilstm.tensorboard")

# train_log.jsonl key -> TensorBoard tag
SCALARS = {
    "train_loss": "train/loss",
    "lr": "train/lr",
    "tokens_per_s": "train/tokens_per_s",
    "dev_entity_f1": "dev/entity_f1",
    "dev_token_macro_f1": "dev/token_macro_f1",
    "dev_entity_f1_strict": "dev/entity_f1_strict",
    "dev_seed_batch_macro_f1": "dev/seed_batch_macro_f1",
    "dev_unaveraged_entity_f1": "dev/unaveraged_entity_f1",
    "epoch_seconds": "time/epoch_seconds",
}
FINAL = ("entity_f1", "entity_precision", "entity_recall", "entity_f1_strict", "token_macro_f1")


def require_tensorboard() -> None:
    """ConfigError (naming the flag) when the tensorboard package is not installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError("{tensorboard} needs the tensorboard package: pip install 'nerbilstm[tensorboard]'",
                          ("tensorboard",)) from None


class TensorBoardLog:
    """The event files of one run in ``directory`` (created if needed)."""

    def __init__(self, directory: str | Path):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.directory = Path(directory)
        self.writer = SummaryWriter(log_dir=str(self.directory))
        log.info("TensorBoard event files in %s", self.directory)

    def epoch(self, record: dict) -> None:
        """The scalars of one train_log.jsonl record, at step ``record["epoch"]``."""
        for key, tag in SCALARS.items():
            if isinstance(record.get(key), (int, float)):
                self.writer.add_scalar(tag, record[key], record["epoch"])
        self.writer.flush()

    def finish(self, run_config: dict, metrics: dict) -> None:
        """The hyperparameters (model and training configs) with the final figures, then close."""
        from torch.utils.tensorboard.summary import hparams

        figures = final_figures(metrics)
        for summary in hparams(hyperparameters(run_config), figures):
            self.writer.file_writer.add_summary(summary)
        step = metrics.get("epochs_run", 0)
        for tag, value in figures.items():
            self.writer.add_scalar(tag, value, step)
        self.close()

    def close(self) -> None:
        self.writer.close()


def hyperparameters(run_config: dict) -> dict:
    """``model.*`` and ``training.*`` fields as TensorBoard takes them (None -> "none")."""
    out = {}
    for section in ("model", "training"):
        for name, value in run_config.get(section, {}).items():
            if name == "tensorboard":
                continue
            out[f"{section}.{name}"] = "none" if value is None else value
    return out


def final_figures(metrics: dict) -> dict:
    """``final/dev/entity_f1``, ``final/test/entity_f1``, ... and ``final/best_epoch`` (finite numbers)."""
    out = {"final/best_epoch": float(metrics.get("best_epoch", 0))}
    for split in ("dev", "test"):
        for key in FINAL:
            value = (metrics.get(split) or {}).get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[f"final/{split}/{key}"] = float(value)
    return out
