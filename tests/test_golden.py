"""The engine against tests/golden/tiny.npz: logits, loss, every gradient and ten AdamW steps.

The golden file was computed in float64 by the plain numpy reference
(scripts/make_golden.py), so this checks the numba engine against an independent
implementation. Tolerances: float64 engine ~1e-10 (both sides are exact up to
rounding); float32 engine: logits 1e-5 absolute, loss and step losses 1e-5,
gradients 1e-4 relative to each tensor's largest entry.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig, OptimConfig
from simulator.model.gpt import GPT
from simulator.optim import lr_at, make_optimizer

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "tiny.npz"

TOL = {  # quantity -> (float64 engine, float32 engine)
    "logits": (1e-10, 1e-5),  # absolute
    "loss": (1e-12, 1e-5),  # absolute
    "grads": (1e-10, 1e-4),  # relative to the tensor's largest entry
    "losses": (1e-10, 1e-5),  # absolute, per step
    # absolute; Adam turns rounding noise in gradients that are exactly 0 in theory (the key bias: softmax is
    # shift-invariant) into moves of up to lr * noise / eps, about 1e-12 in float64 and 1e-4 in float32
    "params_after": (1e-9, None),
}


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as f:
        g = {k: f[k] for k in f.files}
    d = json.loads(str(g["model_config"]))
    g["model"] = ModelConfig(**{**d, "attention": AttentionConfig(**d["attention"])})
    g["optim"] = OptimConfig(**json.loads(str(g["optim_config"])))
    g["names"] = [k[len("param."):] for k in g if k.startswith("param.")]
    return g


def run_engine(golden, dtype):
    """The engine's logits, loss, gradients, ten step losses and final weights on the golden inputs."""
    model = GPT(golden["model"], dtype)
    for name in golden["names"]:
        model.p[name][...] = golden[f"param.{name}"]
    ids, targets = golden["ids"], golden["targets"]
    model.forward(ids, targets)
    out = {"loss": model.loss_and_dlogits(), "logits": model.logits().copy()}
    model.backward()
    out["grads"] = {k: v.copy() for k, v in model.g.items()}
    opt = make_optimizer(golden["optim"], model.layout, dtype)
    losses = []
    for s in range(len(golden["losses"])):
        model.forward(ids, targets)
        losses.append(model.loss_and_dlogits())
        model.backward()
        opt.step(model.params, model.grads, lr_at(s, golden["optim"]))
    out["losses"] = np.array(losses)
    out["params_after"] = {k: v.copy() for k, v in model.p.items()}
    return out


@pytest.mark.parametrize("dtype,col", [(np.float64, 0), (np.float32, 1)], ids=["float64", "float32"])
def test_engine_matches_golden(golden, dtype, col):
    got = run_engine(golden, dtype)
    label = np.dtype(dtype).name
    assert set(got["grads"]) == set(golden["names"]), f"{label}: the model's tensors differ from the golden file's"

    err = np.abs(got["logits"] - golden["logits"]).max()
    assert err < TOL["logits"][col], f"{label}: logits drifted by {err:.3g} (tolerance {TOL['logits'][col]})"

    err = abs(got["loss"] - float(golden["loss"]))
    assert err < TOL["loss"][col], f"{label}: loss {got['loss']} vs golden {float(golden['loss'])}"

    for name in golden["names"]:
        want = golden[f"grad.{name}"]
        err = np.abs(got["grads"][name] - want).max() / max(np.abs(want).max(), 1e-8)
        assert err < TOL["grads"][col], f"{label}: gradient of {name} drifted by {err:.3g} relative"

    err = np.abs(got["losses"] - golden["losses"])
    assert err.max() < TOL["losses"][col], \
        f"{label}: loss of AdamW step {int(err.argmax()) + 1} drifted by {err.max():.3g}: {got['losses']}"
    assert golden["losses"][-1] < golden["losses"][0] - 0.1, "the golden run should learn"

    if TOL["params_after"][col] is not None:
        for name in golden["names"]:
            err = np.abs(got["params_after"][name] - golden[f"param_after.{name}"]).max()
            assert err < TOL["params_after"][col], f"{label}: {name} after the AdamW steps drifted by {err:.3g}"


def test_reference_still_reproduces_golden(golden):
    """The reference itself has not drifted from the file (and the file's settings are make_golden's)."""
    spec = importlib.util.spec_from_file_location("make_golden", HERE.parent / "scripts" / "make_golden.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert asdict(make.MODEL) == asdict(golden["model"]), "make_golden.py's model differs from the golden file's"
    assert asdict(make.OPTIM) == asdict(golden["optim"]), "make_golden.py's optimizer differs from the golden file's"
    inputs = {k: golden[k] for k in golden if k in ("ids", "targets") or k.startswith("param.")}
    fresh = make.golden_arrays(inputs)
    for key, value in fresh.items():
        tol = TOL["params_after"][0] if key.startswith("param_after.") else 1e-12
        err = np.abs(np.asarray(value, np.float64) - golden[key]).max()
        assert err < tol, f"reference: {key} drifted by {err:.3g} from the golden file"
