"""checkpoint.npz: weights, optimizer state, step, RNG states and the resolved config, written atomically."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from simulator.data import DataError, TextDataset, load_dataset
from simulator.data.dataset import TokenizerOnly
from simulator.data.tokenizers import tokenizer_from_json
from simulator.i18n import _
from simulator.presets import PresetError, dump_config, parse_preset_text
from simulator.runfolder import atomic_file
from simulator.session import SessionError, TrainingSession

FORMAT_VERSION = 1
FILENAME = "checkpoint.npz"
ADAPTERS = "adapters.npz"  # a LoRA run's adapters alone, beside its checkpoint (simulator/lora_io.py)


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit (one sentence)."""


def checkpoint_path(path) -> Path:
    """A run folder or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    return path / FILENAME if path.is_dir() else path


def save_checkpoint(path, session: TrainingSession) -> Path:
    """Writes the session's full state to `path` (a file or a run folder) atomically: temp file + rename."""
    path = checkpoint_path(path)
    arrays = session.state_arrays()
    arrays.update({
        "format": np.array(FORMAT_VERSION),
        "config": np.array(dump_config(session.config)),
        "tokenizer": np.array(session.tokenizer.to_json()),
    })
    with atomic_file(path, "wb") as f:  # a crash mid-write leaves the previous checkpoint untouched
        np.savez(f, **arrays)
    if session.model.lora is not None and path.name == FILENAME:  # a LoRA run folder: its adapters as well
        from simulator.lora_io import save_adapters
        save_adapters(path.with_name(ADAPTERS), session)
    return path


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint file, or CheckpointError saying why they cannot be read."""
    path = checkpoint_path(path)
    if not path.exists():
        raise CheckpointError(_("{path}: no checkpoint there").format(path=path))
    if path.is_file() and not zipfile.is_zipfile(path):  # numpy would try it as a pickle and give its advice
        raise CheckpointError(_("{path}: not a checkpoint (not an .npz archive)").format(path=path))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(_("{path}: not a readable checkpoint ({__name__}: {e})").format(
                                  path=path, __name__=e.__class__.__name__, e=e)) from None
    missing = [k for k in ("format", "config", "tokenizer", "params", "step") if k not in arrays]
    if missing:
        raise CheckpointError(_("{path}: not a transformer-sim checkpoint (missing {items})").format(
                                  path=path, items=', '.join(missing)))
    _check_entries(path, arrays)
    if int(arrays["format"]) != FORMAT_VERSION:
        raise CheckpointError(_("{path}: checkpoint format {int}, this version reads {FORMAT_VERSION}").format(
                                  path=path, int=int(arrays['format']), FORMAT_VERSION=FORMAT_VERSION))
    return arrays


def _check_entries(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An edited checkpoint is refused entry by entry: what is wrong, in which file."""
    for key in ("format", "step"):
        a = arrays[key]
        if a.shape != () or a.dtype.kind not in "iu":
            raise CheckpointError(_("{path}: entry '{key}' must be one integer, found {dtype} of shape {shape}").format(
                                      path=path, key=key, dtype=a.dtype, shape=a.shape))
    if int(arrays["step"]) < 0:
        raise CheckpointError(_("{path}: entry 'step' is {int}, a negative step count").format(
                                  path=path, int=int(arrays['step'])))
    if arrays["params"].ndim != 1 or arrays["params"].dtype.kind != "f":
        raise CheckpointError(_("{path}: entry 'params' must be a flat float array, found {dtype} of shape {shape}")
                              .format(path=path, dtype=arrays["params"].dtype, shape=arrays["params"].shape))

    for key in ("rng.data", "rng.dropout"):
        if key not in arrays:
            raise CheckpointError(_("{path}: not a transformer-sim checkpoint (missing {key})").format(
                                      path=path, key=key))
        try:
            state = json.loads(str(arrays[key]))
            np.random.PCG64().state = state  # the generator itself says whether the state is whole
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(_("{path}: entry '{key}' is not a random-number state ({e})").format(
                                      path=path, key=key, e=e)) from None


def load_checkpoint(path, dataset: TextDataset | None = None, need_data: bool = True,
                    backend: str | None = None) -> TrainingSession:
    """A session restored from a checkpoint, ready to continue bit-identically.

    need_data=False (sampling): when the training text is gone, the session gets the checkpoint's own
    tokenizer and can generate, but not train. `backend` (cpu, cuda, auto): where the restored session
    runs, instead of the saved train.backend; a checkpoint holds host arrays, so either backend reads it.
    """
    path = checkpoint_path(path)
    arrays = read_checkpoint(path)
    try:
        config = parse_preset_text(str(arrays["config"]), f"{path} (saved config)", read_data=need_data)
    except PresetError as e:
        raise CheckpointError(_("{path}: the saved config no longer loads: {e}").format(path=path, e=e)) from None
    if backend is not None:
        config = replace(config, train=replace(config.train, backend=backend))
    try:  # char, bpe or wordpiece: the record says which
        saved_tokens = tokenizer_from_json(str(arrays["tokenizer"]))
    except DataError as e:
        raise CheckpointError(_("{path}: entry 'tokenizer': {e}").format(path=path, e=e)) from None
    try:
        dataset = dataset if dataset is not None else load_dataset(config.data)
    except DataError as e:
        if need_data:
            raise CheckpointError(_("{path}: the training data is not readable: {e}").format(path=path, e=e)) from None
        dataset = TokenizerOnly(saved_tokens, config.data.path or "the training text")
    if dataset.tokenizer != saved_tokens:
        what = (_("{path}: the training data has changed since this checkpoint (its characters differ), so the "
                  "weights no longer fit it") if saved_tokens.kind == "char" else
                _("{path}: the training data has changed since this checkpoint (its learned tokens differ), so the "
                  "weights no longer fit it"))
        raise CheckpointError(what.format(path=path))

    try:
        session = TrainingSession(config, dataset)
        session.load_state_arrays(arrays)
    except (SessionError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    return session
