"""Fine-tuning's files: a base checkpoint as the start of a run (`model.init_from`), adapters saved alone.

`model.init_from: RUN_DIR` takes every base weight from a run's checkpoint (a LoRA run's checkpoint
gives its merged weights). The base must have this run's architecture and its tokenizer (the same
characters), else `init_from_problem` says which differs, in one sentence, before anything is built.

An adapters file (`save_adapters`) holds only A and B of each adapted linear and the LoRA settings:
kilobytes next to the base's megabytes. `attach_adapters` puts them on a base checkpoint again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from simulator.config import LoraConfig, ModelConfig
from simulator.i18n import _
from simulator.model.lora import lora_layout, merged_weights
from simulator.model.params import build_layout
from simulator.model.qlora import QuantizedBase, float_base_layout

ADAPTERS_FORMAT = 1
# What must agree between a base checkpoint and the model that starts from it (vocab_size: the tokenizer's)
ARCHITECTURE = ("vocab_size", "d_model", "n_layer", "n_head", "seq_len", "mlp_ratio", "norm", "norm_position",
                "residual", "activation", "tie_embeddings", "positional")
ATTENTION = ("n_kv_head", "mask", "scale")


class LoraFileError(ValueError):
    """A base checkpoint or adapters file that cannot be used (one sentence)."""


def base_of(model: ModelConfig) -> ModelConfig:
    """The model without adapters (what a merge produces, and what a base checkpoint must be)."""
    return replace(model, lora=LoraConfig(), init_from=None)


def resolve(path: str, base_dir: Path) -> str:
    """An init_from path as an absolute path (relative ones against the preset's folder)."""
    p = Path(os.path.expanduser(path))
    return os.path.abspath(p if p.is_absolute() else base_dir / p)


def read_base(path) -> tuple[ModelConfig, object, dict[str, np.ndarray]]:
    """(model config, tokenizer, every base tensor by name) of a checkpoint; LoRA checkpoints come merged."""
    from simulator.checkpoint import CheckpointError, read_checkpoint  # imported here: checkpoint imports session
    from simulator.data import DataError, tokenizer_from_json
    from simulator.presets import PresetError, parse_preset_text

    try:
        arrays = read_checkpoint(path)
        cfg = parse_preset_text(str(arrays["config"]), _("{path} (saved config)").format(path=path), read_data=False)
        tokenizer = tokenizer_from_json(str(arrays["tokenizer"]))
    except (CheckpointError, PresetError, DataError) as e:
        raise LoraFileError(str(e)) from None
    model = cfg.model if cfg.model.vocab_size else replace(cfg.model, vocab_size=tokenizer.vocab_size)
    params = arrays["params"]
    if model.lora.on:  # QLoRA: the NF4 weights decoded, as its linears saw them
        adapters, base = lora_layout(model), float_base_layout(model)
        if "frozen" not in arrays or arrays["frozen"].shape != (base.size,) or params.shape != (adapters.size,):
            raise LoraFileError(_("{path}: a LoRA checkpoint whose weights do not fit its own config").format(
                path=path))
        tensors = dict(base.views(arrays["frozen"]))
        if model.lora.quantized:
            qbase = QuantizedBase(model)
            problem = qbase.load_state_arrays(arrays)
            if problem:
                raise LoraFileError(f"{path}: {problem}")
            tensors.update({n: qbase.dequantized(n, arrays["frozen"].dtype) for n in qbase.names})
        tensors = merged_weights(tensors, adapters.views(params), model)
    else:
        layout = build_layout(model)
        if params.shape != (layout.size,):
            raise LoraFileError(_("{path}: the weights do not fit the checkpoint's own config").format(path=path))
        tensors = {k: v.copy() for k, v in layout.views(params).items()}
    return model, tokenizer, tensors


def architecture_difference(theirs: ModelConfig, ours: ModelConfig) -> str | None:
    """'d_model 32 there, 64 here' for the first architecture field that differs, or None."""
    for name in ARCHITECTURE:
        a, b = getattr(theirs, name), getattr(ours, name)
        if a != b and not (name == "vocab_size" and b is None):
            return _("{key} {theirs} there, {ours} here").format(key=f"model.{name}", theirs=a, ours=b)
    for name in ATTENTION:
        a, b = getattr(theirs.attention, name), getattr(ours.attention, name)
        if a != b:
            return _("{key} {theirs} there, {ours} here").format(key=f"model.attention.{name}", theirs=a, ours=b)
    return None


def init_from_problem(model: ModelConfig, tokenizer, path: str) -> str | None:
    """Why checkpoint `path` cannot be this model's base (one sentence without the key), or None."""
    try:
        theirs, their_tokens, _tensors = read_base(path)
    except LoraFileError as e:
        return str(e)
    if their_tokens != tokenizer:
        return _("{path}: the base was trained with other tokens than this run's data, so its embeddings do not fit "
                 "(fine-tune with the base's data.tokenizer, on text whose characters it knows)").format(path=path)
    diff = architecture_difference(theirs, model)
    if diff:
        return _("{path}: the base checkpoint's model differs from this one ({difference})").format(
            path=path, difference=diff)
    return None


def apply_init_from(model, path: str, tokenizer) -> None:
    """Copies a base checkpoint's weights into a built GPT's base (its frozen buffer under LoRA)."""
    problem = init_from_problem(model.cfg, tokenizer, path)
    if problem:
        raise LoraFileError(problem)
    _model, _tokens, tensors = read_base(path)
    model.load_base(tensors)  # QLoRA quantizes its targeted weights from them


# ------------------------------------------------------------------------------------------ adapters
def save_adapters(path, session) -> Path:
    """Writes a LoRA session's adapters alone (A and B of each adapted linear) and its LoRA settings."""
    from simulator.runfolder import atomic_file

    model = session.model
    if model.lora is None:
        raise LoraFileError(_("this run has no LoRA adapters to save (set model.lora)"))
    path = Path(path)
    arrays = {f"lora.{k}": v.copy() for k, v in model.layout.views(model.params).items()}
    arrays.update({"format": np.array(ADAPTERS_FORMAT), "lora": np.array(json.dumps(asdict(model.lora))),
                   "base": np.array(json.dumps(asdict(base_of(model.cfg))))})
    with atomic_file(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def read_adapters(path) -> tuple[LoraConfig, ModelConfig, dict[str, np.ndarray]]:
    """(LoRA settings, the base model config they were trained on, tensors by name) of an adapters file."""
    path = Path(path)
    if not path.is_file():
        raise LoraFileError(_("{path}: no adapters file there").format(path=path))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        lora = json.loads(str(arrays["lora"]))
        base = json.loads(str(arrays["base"]))
        lora = LoraConfig(**{**lora, "targets": tuple(lora["targets"])})
        model = ModelConfig(**{**base, "lora": LoraConfig(), "attention": replace(ModelConfig().attention,
                                                                                  **base["attention"])})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LoraFileError(_("{path}: not an adapters file ({error})").format(
            path=path, error=f"{e.__class__.__name__}: {e}")) from None
    tensors = {k[len("lora."):]: v for k, v in arrays.items() if k.startswith("lora.")}
    return lora, model, tensors


def load_adapters(path, session) -> None:
    """Copies an adapters file's A and B into a LoRA session built with the same LoRA settings."""
    lora, base, tensors = read_adapters(path)
    model = session.model
    if model.lora is None or lora != model.lora:
        raise LoraFileError(_("{path}: the adapters were trained with {theirs}, this model has {ours}").format(
            path=path, theirs=lora, ours=model.cfg.lora))
    diff = architecture_difference(base, model.cfg)
    if diff:
        raise LoraFileError(_("{path}: the adapters belong to another model ({difference})").format(
            path=path, difference=diff))
    views = model.layout.views(model.params)
    if set(views) != set(tensors) or any(views[k].shape != tensors[k].shape for k in views):
        raise LoraFileError(_("{path}: the adapters' tensors do not fit this model").format(path=path))
    for k, v in views.items():
        v[...] = tensors[k]
    session._generator_key = None  # new weights: a cached decoder's keys and values are stale


def attach_adapters(base_run, adapters_path, dataset=None):
    """A LoRA session on a base checkpoint's weights with the adapters of a file: the fine-tuned model again."""
    from simulator.checkpoint import load_checkpoint
    from simulator.session import TrainingSession

    lora, _base, _tensors = read_adapters(adapters_path)
    base = load_checkpoint(base_run, dataset)
    cfg = base.config
    cfg = replace(cfg, model=replace(cfg.model, lora=lora, init_from=None))
    session = TrainingSession(cfg, base.dataset)
    if base.model.frozen is not None:
        raise LoraFileError(_("{run}: a LoRA run's checkpoint; attach adapters to a base model's run").format(
            run=base_run))
    session.model.load_base(base.model.layout.views(base.model.params))  # QLoRA: quantized again, deterministically
    load_adapters(adapters_path, session)
    return session


def merged_session_weights(session) -> dict[str, np.ndarray]:
    """A LoRA session's base weights with its adapters folded in: W' = W + (alpha / r) (B A)^T."""
    m = session.model
    return merged_weights(m.base_tensors(), m.layout.views(m.params), m.cfg)
