"""Training checkpoints: everything needed to continue a run exactly where it stopped.

``DIR/checkpoint/`` holds ``state.safetensors`` (model weights, the best weights so far, the
optimizer's tensors, the torch RNG state) and ``state.json`` (epoch and batch position, Python and
NumPy RNG states, scheduler, early-stopping state, history, configs and vocabulary). Both are
written atomically (temporary name, then rename), JSON last and carrying the weights' sha256,
so a checkpoint is either whole and consistent or refused. No pickle anywhere.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import numpy as np
import torch

from nerbilstm.errors import ModelFileError
from nerbilstm.io import atomic_write_json, read_weights, save_tensors, sha256_file

CHECKPOINT_DIR = "checkpoint"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
CHECKPOINT_VERSION = 1
# What a resumable state.json holds besides the tensors' file and checksum.
REQUIRED_KEYS = ("model", "training", "vocab", "progress", "scheduler", "rng", "optim_param_groups", "tensors_sha256")


def rng_state() -> tuple[dict, torch.Tensor]:
    """(JSON-able Python and NumPy RNG states, torch CPU RNG state tensor)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return ({"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]},
            torch.get_rng_state())


def set_rng_state(states: dict, torch_state: torch.Tensor) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch_state)


def save_checkpoint(out_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    best_state: dict | None, state: dict, average_state: dict | None = None) -> Path:
    """Write the checkpoint of a run; ``state`` is the JSON-able rest (epoch, step, history, ...);
    ``average_state`` the running average of the weights (``--average-from``), if any."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    if average_state is not None:
        tensors.update({f"avg.{k}": v for k, v in average_state.items()})
    opt = optimizer.state_dict()
    for index, slots in opt["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    rng_json, rng_torch = rng_state()
    tensors["rng.torch"] = rng_torch
    # A kill at any moment leaves the last complete checkpoint: the tensors go to a new file,
    # then state.json (replaced atomically) names it, then the older tensor files go.
    name = f"state-{uuid.uuid4().hex[:12]}.safetensors"
    save_tensors(folder / name, tensors)
    atomic_write_json(folder / STATE_JSON, dict(state, checkpoint_version=CHECKPOINT_VERSION, rng=rng_json,
                                                optim_param_groups=opt["param_groups"], tensors_file=name,
                                                tensors_sha256=sha256_file(folder / name)))
    for old in [*folder.glob("state*.safetensors"), *folder.glob(".state*.tmp")]:
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder


def read_checkpoint(out_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """-> (state JSON, tensors) of ``out_dir/checkpoint``, checked for consistency."""
    import json

    folder = Path(out_dir) / CHECKPOINT_DIR
    path = folder / STATE_JSON
    if not path.is_file():
        raise ModelFileError(f"no checkpoint to resume from (expected {CHECKPOINT_DIR}/{STATE_JSON})", path=out_dir)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"damaged checkpoint state: {err}", path=path) from None
    if not isinstance(state, dict):
        raise ModelFileError("damaged checkpoint state: not a JSON object", path=path)
    if state.get("checkpoint_version", 0) > CHECKPOINT_VERSION:
        raise ModelFileError("checkpoint from a newer nerbilstm", path=path)
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ModelFileError(f"damaged checkpoint state: no {', '.join(missing)}", path=path)
    tensors = read_weights_file(folder / state.get("tensors_file", STATE_TENSORS), state.get("tensors_sha256"))
    return state, tensors


def read_weights_file(path: Path, sha256: str | None) -> dict[str, torch.Tensor]:
    return read_weights(path.parent, {"weights_sha256": sha256}, name=path.name)


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict, tensors: dict[str, torch.Tensor]) -> None:
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state["optim_param_groups"]})


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def remove_checkpoint(out_dir: str | Path) -> None:
    folder = Path(out_dir) / CHECKPOINT_DIR
    (folder / STATE_JSON).unlink(missing_ok=True)
    for tensors in folder.glob("state*.safetensors"):
        tensors.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
