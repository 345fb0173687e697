"""QLoRA (model.lora.base: nf4): the frozen base of every targeted linear held only as NF4 codes and scales,
decoded tile by tile inside the linear. The tile kernel against nf4.dequantize bit for bit; the linear against
numpy on the decoded weight; finite differences on odd shapes (adapters and input; the codes are constants);
step 0 is the base model on decoded weights; resume is bit-identical; the memory bill is exact; bad settings
are one line with exit 2; cuda refuses it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from main import main
from simulator.checkpoint import load_checkpoint, save_checkpoint
from simulator.config import LoraConfig, ModelConfig
from simulator.gradcheck import check_gradients
from simulator.kernels.cpu import qlora as qk
from simulator.kernels.cpu.lora import lora_backward, lora_forward
from simulator.lora_io import base_of, merged_session_weights
from simulator.memory import MemoryBill, measure, memory_bill
from simulator.model.gpt import GPT
from simulator.model.params import build_layout
from simulator.model.qlora import float_base_layout, quantized_names
from simulator.quant.nf4 import dequantize, quantize
from tests.helpers import rel_err
from tests.test_lora import tiny

# odd shapes: width 14 (2 heads of 7), hidden 42, vocab 11, a batch of 3 x 5, rank 3; block 14 divides every
# targeted weight (14 x 42, 14 x 14, 14 x 42, 42 x 14) and tiles of 4 leave a short last tile everywhere
ODD = ModelConfig(vocab_size=11, d_model=14, n_layer=2, n_head=2, seq_len=5, mlp_ratio=3,
                  lora=LoraConfig(rank=3, alpha=5.0, base="nf4", block=14))
FD_TOL = 1e-6


def qlora_cfg(**dotted):
    return tiny(**{"model.lora.rank": 4, "model.lora.alpha": 8.0, "model.lora.base": "nf4", **dotted})


# ------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("double", [False, True])
def test_a_decoded_tile_is_those_rows_and_columns_of_the_decoded_weight_bit_for_bit(double):
    rng = np.random.default_rng(0)
    w = rng.standard_t(4, (15, 38)).astype(np.float32) * 0.1  # 570 weights, block 6: blocks cross the rows
    q = quantize(w, block=6, double=double, scale_block=7)
    whole = dequantize(q)
    scratch = np.empty(15 * 38)
    for r0, r1, c0, c1 in [(0, 15, 0, 38), (3, 8, 5, 6), (14, 15, 1, 38), (0, 15, 33, 38), (7, 11, 0, 4)]:
        tile = qk.tile_of(q, scratch, r0, r1, c0, c1)  # float64 out: the float32 products widened
        assert np.array_equal(tile, whole[r0:r1, c0:c1].astype(np.float64)), (r0, r1, c0, c1)


@pytest.mark.parametrize("tile", [4, 5, 64])
def test_the_qlora_linear_is_the_lora_linear_on_the_decoded_weight(tile):
    rng = np.random.default_rng(tile)
    N, d_in, d_out, r, s = 7, 13, 22, 3, 0.6  # 286 weights: block 22 ends mid-row; tiles leave a short one
    w = rng.normal(0, 0.3, (d_in, d_out))
    q = quantize(w, block=22, double=True)
    wq = dequantize(q).astype(np.float64)
    x, bias, a, b = (rng.normal(size=sh) for sh in ((N, d_in), (d_out,), (r, d_in), (d_out, r)))
    scratch, prod = np.empty(tile * max(d_in, d_out)), np.empty(N * tile)
    out, u, tmp = np.empty((N, d_out)), np.empty((N, r)), np.empty((N, d_out))
    qk.qlora_linear_forward(out, x, q, bias, scratch, tile)
    lora_forward(out, u, x, a, b, s, tmp)
    assert np.abs(out - (x @ wq + bias + s * (x @ a.T) @ b.T)).max() < 1e-12
    dout = rng.normal(size=(N, d_out))
    dx = np.full((N, d_in), np.nan)
    qk.qlora_linear_backward(dx, dout, q, scratch, prod, add=False, tile=tile)  # written: nan gone
    assert np.abs(dx - dout @ wq.T).max() < 1e-12
    qk.qlora_linear_backward(dx, dout, q, scratch, prod, add=True, tile=tile)  # added
    assert np.abs(dx - 2 * dout @ wq.T).max() < 1e-12


def test_the_qlora_linear_passes_finite_differences_in_its_input_and_adapters():
    """loss = sum(G * y), y = x Wq + b + s (x A^T) B^T with Wq the decoded codes (a constant): float64."""
    rng = np.random.default_rng(3)
    N, d_in, d_out, r, s = 5, 9, 14, 2, 1.7
    q = quantize(rng.normal(0, 0.5, (d_in, d_out)), block=6)
    bias, G = rng.normal(size=d_out), rng.normal(size=(N, d_out))
    x, a, b = rng.normal(size=(N, d_in)), rng.normal(size=(r, d_in)), rng.normal(size=(d_out, r))
    scratch, prod, u, tmp = np.empty(4 * d_out), np.empty(N * 4), np.empty((N, r)), np.empty((N, max(d_in, d_out)))

    def loss():
        y = np.empty((N, d_out))
        qk.qlora_linear_forward(y, x, q, bias, scratch, 4)
        lora_forward(y, u, x, a, b, s, tmp[:, :d_out])
        return float(np.sum(G * y))

    loss()
    dx, da, db = np.zeros_like(x), np.zeros_like(a), np.zeros_like(b)
    qk.qlora_linear_backward(dx, G, q, scratch, prod, add=False, tile=4)
    lora_backward(dx, da, db, G, x, u, a, b, s, np.empty((N, r)), tmp[:, :d_in])
    for name, arr, grad in (("x", x, dx), ("A", a, da), ("B", b, db)):
        flat, g = arr.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1e-6
            up = loss()
            flat[i] = old - 1e-6
            down = loss()
            flat[i] = old
            assert rel_err(g[i], (up - down) / 2e-6) < FD_TOL, (name, i)


# ------------------------------------------------------------------------- the model
def random_qlora_model(cfg: ModelConfig, seed=0, batch=(3, 5)):
    """A float64 QLoRA model on a large random base (quantized) with random adapters (B too), and a batch."""
    m = GPT(cfg, np.float64)
    rng = np.random.default_rng(seed)
    base = build_layout(cfg)
    tensors = {}
    for spec in base:
        w = rng.normal(0.0, 0.4, spec.shape)
        tensors[spec.name] = 1.0 + w if spec.kind == "norm" and spec.name.endswith(".w") else w
    m.load_base(tensors)
    for spec in m.layout:
        m.p[spec.name][...] = rng.normal(0.0, 0.4, spec.shape)
    ids = rng.integers(0, cfg.vocab_size, batch).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, batch).astype(np.int32)
    return m, ids, targets, tensors


@pytest.mark.parametrize("change", [
    {},
    {"norm": "rmsnorm", "norm_position": "post", "activation": "relu",
     "lora": LoraConfig(rank=2, alpha=3.0, base="nf4", block=14, double_quant=True)},
    {"positional": "rope", "attention": replace(ODD.attention, impl="tiled", n_kv_head=1),
     "lora": LoraConfig(rank=1, alpha=2.0, base="nf4", block=2, targets=("qkv", "fc2"))},
])
def test_qlora_gradients_match_finite_differences_on_odd_shapes(change, monkeypatch):
    from tests.test_lora import worst_fd
    monkeypatch.setattr(qk, "TILE", 4)  # several tiles per linear, the last one short
    cfg = replace(ODD, **{"tie_embeddings": False, **change})  # untied: wte is the input's alone
    m, ids, targets, _ = random_qlora_model(cfg)
    assert set(m.qbase.weights) == set(quantized_names(cfg))
    bad = {k: e for k, e in worst_fd(m, ids, targets).items() if e >= FD_TOL}
    assert not bad, bad
    # the input gradient of the whole stack: central differences on the (frozen) embedding of one token
    m.forward(ids, targets)
    m.loss_and_dlogits()
    m.backward()
    dx0 = m.grads_acts["x0"].copy()  # d loss / d x0, which passes through every quantized linear
    wte = m.p["wte"]
    tok, col = int(ids[0, 0]), 3
    rows = ids.reshape(-1) == tok
    want = dx0[rows, col].sum()
    old = wte[tok, col]
    vals = []
    for v in (old + 1e-6, old - 1e-6):
        wte[tok, col] = v
        vals.append(m.forward(ids, targets))
    wte[tok, col] = old
    assert abs(want) > 1e-3 and rel_err(want, (vals[0] - vals[1]) / 2e-6) < FD_TOL


def test_qlora_forward_is_the_lora_model_on_the_decoded_base():
    cfg = replace(ODD, lora=replace(ODD.lora, double_quant=True))
    m, ids, targets, tensors = random_qlora_model(cfg, seed=4)
    ref = GPT(replace(cfg, lora=replace(cfg.lora, base="float")), np.float64)  # plain LoRA, float base
    ref.load_base({**tensors, **{n: m.qbase.dequantized(n, np.float64) for n in m.qbase.names}})
    ref.params[...] = m.params
    a, b = m.forward(ids, targets), ref.forward(ids, targets)
    assert abs(a - b) < 1e-12 and np.abs(m.logits() - ref.logits()).max() < 1e-12
    # no float copy of a targeted weight stays: the frozen buffer lacks them, the tile scratch is a sliver
    assert m.frozen.size == float_base_layout(cfg).size < ref.frozen.size
    assert not set(m.qbase.names) & set(m.p)


def test_step_zero_of_qlora_is_the_base_model_on_decoded_weights_and_the_codes_never_move():
    from simulator.session import TrainingSession
    full, lora, qlora = (TrainingSession(tiny()), TrainingSession(tiny(**{"model.lora.rank": 4})),
                         TrainingSession(qlora_cfg(**{"model.lora.double_quant": True})))
    # one seed, one base: the float part is LoRA's, the codes are LoRA's weights quantized
    base = lora.model.frozen_layout.views(lora.model.frozen)
    for name, view in float_base_layout(qlora.config.model).views(qlora.model.frozen).items():
        assert np.array_equal(view, base[name])
    for name in qlora.model.qbase.names:
        assert np.array_equal(qlora.model.qbase[name].packed, quantize(base[name], double=True).packed)
    decoded = full.model.layout.views(full.model.params)
    for name in qlora.model.qbase.names:
        decoded[name][...] = qlora.model.qbase.dequantized(name)
    a, b = full.step().loss, qlora.step().loss
    assert abs(a - b) < 1e-6 * abs(a), (a, b)  # float32, the same products tiled
    codes = {n: qlora.model.qbase[n].packed.copy() for n in qlora.model.qbase.names}
    qlora.run(2)
    assert all(np.array_equal(qlora.model.qbase[n].packed, c) for n, c in codes.items())
    rows = check_gradients(qlora, n_per_tensor=2)  # the app's gradient check on the session, float64 twin
    assert max(r.rel_err for r in rows) < 1e-6
    merged = merged_session_weights(qlora)  # the decoded base with the adapters folded in generates alike
    qlora.model.training = False
    ids = np.array([[1, 2, 3, 4, 5]] * 4, dtype=np.int32)
    qlora.model.forward(ids)
    plain = GPT(base_of(qlora.config.model), np.float32)
    for name, w in merged.items():
        plain.p[name][...] = w
    plain.training = False
    plain.forward(ids)
    assert np.abs(plain.logits() - qlora.model.logits()).max() < 1e-4
    # the KV-cache decoder shares the codes: the prompt's whole forward, then one cached row
    for n in (4, 5):
        assert np.abs(qlora.next_logits(np.arange(1, n + 1)) - plain.logits()[0, n - 1]).max() < 1e-4


def test_a_qlora_run_resumes_bit_identically_from_its_stored_codes(tmp_path):
    from simulator.session import TrainingSession
    cfg = qlora_cfg(**{"model.lora.dropout": 0.3, "model.lora.double_quant": True})
    whole = TrainingSession(cfg)
    whole.run(4)
    part = TrainingSession(cfg)
    part.run(2)
    save_checkpoint(tmp_path, part)
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert "nf4.h0.attn.qkv.w.packed" in z.files and z["nf4.h0.attn.qkv.w.packed"].dtype == np.uint8
    resumed = load_checkpoint(tmp_path)
    resumed.run(2)
    assert np.array_equal(resumed.model.params, whole.model.params)
    assert np.array_equal(resumed.model.frozen, whole.model.frozen)
    for name in whole.model.qbase.names:
        a, b = resumed.model.qbase[name], whole.model.qbase[name]
        assert np.array_equal(a.packed, b.packed) and np.array_equal(a.scale_codes, b.scale_codes)
    assert resumed.last_record.loss == whole.last_record.loss


def test_qlora_starts_from_a_base_run_and_its_adapters_and_checkpoint_travel(tmp_path):
    from simulator.lora_io import attach_adapters, read_base, save_adapters
    from simulator.session import TrainingSession
    folder, base = tmp_path / "base", TrainingSession(tiny())
    base.run(3)
    save_checkpoint(folder, base)
    s = TrainingSession(qlora_cfg(**{"model.init_from": str(folder), "model.lora.double_quant": True}))
    views = base.model.layout.views(base.model.params)
    for name in s.model.qbase.names:  # the base run's weights, quantized: nothing else
        assert np.array_equal(s.model.qbase[name].packed, quantize(views[name], double=True).packed)
    for name, view in s.model.frozen_layout.views(s.model.frozen).items():
        assert np.array_equal(view, views[name])
    s.run(2)
    again = attach_adapters(folder, save_adapters(tmp_path / "adapters.npz", s))  # quantized again: the same codes
    ids = np.array([[1, 2, 3, 4, 5]] * 4, dtype=np.int32)
    for m in (s.model, again.model):
        m.forward(ids)
    assert np.array_equal(s.model.logits(), again.model.logits())
    save_checkpoint(tmp_path / "q", s)  # a QLoRA checkpoint as a base: its decoded weights, adapters merged
    _, _, tensors = read_base(tmp_path / "q")
    merged = merged_session_weights(s)
    assert set(tensors) == set(merged) and all(np.array_equal(tensors[k], merged[k]) for k in merged)


@pytest.mark.parametrize("double", [False, True])
def test_the_memory_bill_with_qlora_is_exact_and_the_base_is_under_a_sixth(double):
    from simulator.session import TrainingSession
    cfg = qlora_cfg(**{"model.lora.double_quant": double, "optim.grad_clip": 1.0})
    s = TrainingSession(cfg)
    s.step()
    m = s.model
    held = sum(a.nbytes for q in m.qbase.weights.values()
               for a in (q.packed, q.absmax, q.scale_codes, q.scale_absmax) if a is not None) + 4 * double * len(
        m.qbase.weights)
    got = MemoryBill(parameters=m.params.nbytes, frozen=m.frozen.nbytes, quantized=held,
                     gradients=m.grads.nbytes + s.preclip_copy_bytes,
                     optimizer=sum(b.nbytes for b in s.optimizer.state.values()) + s.optimizer.decay_mask.nbytes,
                     activations=m.acts.nbytes, activation_gradients=m.grads_acts.nbytes)
    bill = memory_bill(cfg, vocab_size=s.tokenizer.vocab_size)
    assert bill == got == measure(s)[0]
    lora = memory_bill(tiny(**{"model.lora.rank": 4}), vocab_size=s.tokenizer.vocab_size)
    n = sum(m.qbase[name].packed.size * 2 for name in m.qbase.names)
    assert bill.quantized < 4 * n / 6  # the targeted weights: under a sixth of float32's bytes
    assert bill.frozen + bill.quantized < lora.frozen / 2


def test_the_memory_command_shows_the_nf4_base_measured_against_float32(tmp_path, capsys):
    path = tmp_path / "q.yaml"
    path.write_text("name: q\nmodel: {d_model: 32, n_head: 4, seq_len: 16, lora: {rank: 2, base: nf4, "
                    "double_quant: true}}\ntrain: {batch_size: 2}\n")
    assert main(["memory", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("frozen base, NF4 part"))
    predicted, measured = row.split()[-4], row.split()[-1]
    assert predicted == measured and int(predicted.replace(",", "")) > 0
    assert "QLoRA: the 8 targeted weight matrices" in out and "measured: packed codes" in out


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text, message", [
    ("model:\n  d_model: 32\n  lora:\n    rank: 2\n    base: nf4\n    block: 48\n",
     "p.yaml:7: model.lora.block: 48 does not divide the 1024 weights of target proj (32 x 32)"),
    ("model:\n  lora:\n    rank: 2\n    base: nf4\n    block: 7\n", "model.lora.block: 7 is odd"),
    ("model:\n  lora:\n    rank: 2\n    base: nf8\n", "model.lora.base: 'nf8' is not one of float, nf4"),
    ("model:\n  lora: {rank: 2, base: nf4}\ntrain:\n  backend: cuda\n", "train.backend: cuda cannot run QLoRA"),
])
def test_bad_qlora_settings_are_one_line_with_file_and_line(text, message, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\n" + text)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and f"{path}:" in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


# ------------------------------------------------------------------------- the lesson card's metrics
def test_the_qlora_card_metrics_read_the_frames():
    from simulator.lessons.cards import Claim
    from simulator.lessons.cards_metrics import Run, measure
    from simulator.lessons.finetune import (
        FinetuneConfig,
        FinetuneFrame,
        FinetunePoint,
        Learner,
        QuantErrors,
        learner_labels,
        quant_errors,
    )

    cfg = FinetuneConfig(ranks=(4,), qlora_rank=4)
    assert learner_labels(cfg) == ["full", "LoRA r=4", "QLoRA r=4"]
    assert learner_labels(FinetuneConfig(ranks=(1,), qlora_rank=0)) == ["full", "LoRA r=1"]
    learners = (Learner("full", 0, 1000, 4000, 9000, base_bytes=4000), Learner("LoRA r=4", 4, 100, 600, 8000),
                Learner("QLoRA r=4", 4, 100, 600, 5000, base_bytes=900, nf4_bytes=500, nf4_float32_bytes=4000))
    quant = QuantErrors(("a",), np.zeros(3), {}, {}, pooled={"nf4": 1.0e-5, "int4": 1.5e-5})
    points = [FinetunePoint(k, 1.0, v, 2.0) for k, v in (("full", 2.5), ("LoRA r=4", 2.4), ("QLoRA r=4", 2.43))]
    frame = FinetuneFrame(1, points, learners, 3.0, 2.0, {}, {"float32": (3.0, 2.0), "nf4": (3.01, 2.004)}, quant)
    run = Run("ft", cfg, "finetune", [frame], 0.0)

    def claim(**kw):
        return Claim(**{"text": "t", "comparison": "<", "threshold": 0.0, **kw})

    v = measure(claim(metric="quant_mse", of="nf4", other_of="int4"), run, None)
    assert v.value == pytest.approx(-0.5e-5) and v.holds
    assert measure(claim(metric="nf4_bytes_share", threshold=1 / 6), run, None).value == 0.125
    v = measure(claim(metric="base_val_loss", of="nf4", other_of="float32", comparison="within", threshold=0.005),
                run, None)
    assert v.value == pytest.approx(0.004) and v.holds
    v = measure(claim(metric="val_new", of="QLoRA r=4", other_of="LoRA r=4", comparison="within", threshold=0.02),
                run, None)
    assert v.value == pytest.approx(0.03) and not v.holds
    # the errors themselves: a tensor on the NF4 grid's own levels comes back exactly, int4 does not
    from simulator.quant.nf4 import nf4_levels
    w = np.tile(nf4_levels(), 8).reshape(8, 16)
    q = quant_errors({"w": w}, ["w"])
    assert q.mse["nf4"]["w"] == 0.0 < q.mse["int4"]["w"] and q.pooled["int4"] == q.mse["int4"]["w"]
    assert abs(q.hist["int4"]["w"].sum() - 1) < 1e-12


def test_the_bench_times_both_linears_at_every_target_shape():
    """Runs, not timed: the numbers are the bench's to print (a shared machine's timings assert nothing)."""
    from simulator.bench.finetune import qlora_vs_lora_linears
    r = qlora_vs_lora_linears("tiny", rank=4, repeats=1)
    assert set(r["seconds"]) == {"qkv", "proj", "fc", "fc2"} and r["rows"] == 64 * 16
    assert all(0 < t < 10 for pair in r["seconds"].values() for t in pair)
