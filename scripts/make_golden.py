"""Writes tests/golden/tiny.npz: a tiny GPT's logits, loss, every gradient and ten AdamW steps, in float64.

Everything is computed by the plain numpy reference (simulator/reference.py),
not by the numba engine, so the golden test checks the engine against an
independent implementation rather than against itself. Run it only when the
model's definition changes on purpose:

    python scripts/make_golden.py
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.config import ModelConfig, OptimConfig  # noqa: E402
from simulator.data import TextDataset, builtin_corpus  # noqa: E402
from simulator.model.params import build_layout, init_params  # noqa: E402
from simulator.optim import decay_kinds, lr_at  # noqa: E402
from simulator.reference import reference_loss_and_grads, reference_train_step  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "tiny.npz"
SEED = 1337
BATCH, SEQ = 3, 8
STEPS = 10

# T = seq_len = 8, C = 12 (not a multiple of 8), three heads of 4, V = 46 characters.
MODEL = ModelConfig(vocab_size=46, d_model=12, n_layer=2, n_head=3, seq_len=SEQ, mlp_ratio=4, norm="layernorm",
                    norm_position="pre", residual=True, activation="gelu", dropout=0.0, tie_embeddings=True,
                    init="normal", init_std=0.1)
# warmup then cosine inside the ten steps, weight decay on matrices: every part of the update is exercised
OPTIM = OptimConfig(name="adamw", lr=1e-2, weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8,
                    schedule="warmup_cosine", warmup_steps=3, decay_steps=STEPS, min_lr=1e-3, grad_clip=0.0)


def golden_inputs() -> dict[str, np.ndarray]:
    """The fixed batch (from the built-in corpus) and the seeded initial weights, float64 by name."""
    data = TextDataset(builtin_corpus(), 0.1, "built-in corpus")
    assert data.vocab_size == MODEL.vocab_size, (data.vocab_size, MODEL.vocab_size)
    ids, targets = np.zeros((BATCH, SEQ), np.int32), np.zeros((BATCH, SEQ), np.int32)
    data.sample_batch("train", np.random.default_rng(SEED), ids, targets)
    layout = build_layout(MODEL)
    flat = np.zeros(layout.size)
    views = layout.views(flat)
    init_params(views, layout, MODEL, np.random.default_rng(SEED))
    return {"ids": ids, "targets": targets, **{f"param.{k}": v.copy() for k, v in views.items()}}


def golden_arrays(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the reference computes from `inputs`: logits, loss, grads, per-step losses, final weights."""
    params = {k[len("param."):]: v.copy() for k, v in inputs.items() if k.startswith("param.")}
    ids, targets = inputs["ids"], inputs["targets"]
    loss, logits, grads = reference_loss_and_grads(params, MODEL, ids, targets)
    out = {"logits": logits, "loss": np.array(loss), **{f"grad.{k}": g for k, g in grads.items()}}
    kinds = decay_kinds(OPTIM)
    decay = {spec.name: 1.0 if spec.kind in kinds else 0.0 for spec in build_layout(MODEL)}
    state = {"params": params, "m": None, "v": None, "t": 0}
    losses = [reference_train_step(state, MODEL, ids, targets, lr_at(s, OPTIM), OPTIM.beta1, OPTIM.beta2, OPTIM.eps,
                                   OPTIM.weight_decay, decay) for s in range(STEPS)]
    out["losses"] = np.array(losses)
    out.update({f"param_after.{k}": w for k, w in params.items()})
    return out


def main() -> None:
    """Regenerate the golden file."""
    inputs = golden_inputs()
    arrays = golden_arrays(inputs)
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, model_config=np.array(json.dumps(asdict(MODEL))),
                        optim_config=np.array(json.dumps(asdict(OPTIM))), **inputs, **arrays)
    print(f"wrote {GOLDEN.name}: loss {float(arrays['loss']):.6f}, "
          f"after {STEPS} steps {arrays['losses'][-1]:.6f}")


if __name__ == "__main__":
    main()
