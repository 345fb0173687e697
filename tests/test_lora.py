"""LoRA: adapters over a frozen base. Finite differences on odd shapes (with and without LoRA dropout), step 0
equals the base model exactly, the base gets no gradient or optimizer state, merging is exact, adapters travel
alone, a base checkpoint starts a run (model.init_from), resume is bit-identical, the memory bill is exact, and
bad settings are one line with exit 2."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from main import main
from simulator.checkpoint import load_checkpoint, save_checkpoint
from simulator.config import LoraConfig, ModelConfig
from simulator.gradcheck import check_gradients
from simulator.kv_cache import CachedDecoder
from simulator.lora_io import (
    LoraFileError,
    attach_adapters,
    base_of,
    merged_session_weights,
    save_adapters,
)
from simulator.memory import MemoryBill, measure, memory_bill
from simulator.model.gpt import GPT
from simulator.model.lora import merged_weights
from simulator.presets import load_preset, override
from tests.helpers import rel_err

# odd shapes: width 15 (3 heads of 5), hidden 30, vocab 11, a batch of 3 x 5, rank 3
ODD = ModelConfig(vocab_size=11, d_model=15, n_layer=2, n_head=3, seq_len=5, mlp_ratio=2,
                  lora=LoraConfig(rank=3, alpha=5.0))
FD_TOL = 1e-6


def random_lora_model(cfg: ModelConfig, seed=0, batch=(3, 5)):
    """A float64 LoRA model with large random base weights and adapters (B too, so every gradient is live)."""
    m = GPT(cfg, np.float64)
    rng = np.random.default_rng(seed)
    for layout in (m.frozen_layout, m.layout):
        for spec in layout:
            w = rng.normal(0.0, 0.4, spec.shape)
            m.p[spec.name][...] = 1.0 + w if spec.kind == "norm" and spec.name.endswith(".w") else w
    ids = rng.integers(0, cfg.vocab_size, batch).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, batch).astype(np.int32)
    return m, ids, targets


def worst_fd(m, ids, targets, before=lambda: None, n_random=3, seed=1) -> dict[str, float]:
    """Worst relative error per adapter tensor: analytic gradient vs central differences (eps 1e-6)."""
    before()
    m.forward(ids, targets)
    m.loss_and_dlogits()
    m.backward()
    grads = {k: v.copy() for k, v in m.g.items()}
    assert max(np.abs(g).max() for g in grads.values()) > 1e-2, "gradients too small to mean anything"
    rng = np.random.default_rng(seed)
    worst = {}
    for spec in m.layout:
        g, w = grads[spec.name].reshape(-1), m.p[spec.name].reshape(-1)
        picks = {int(np.argmax(np.abs(g)))} | {int(i) for i in rng.choice(g.size, n_random, replace=False)}
        errs = []
        for i in picks:
            old, vals = w[i], []
            for x in (old + 1e-6, old - 1e-6):
                w[i] = x
                before()
                vals.append(m.forward(ids, targets))
            w[i] = old
            errs.append(rel_err(g[i], (vals[0] - vals[1]) / 2e-6))
        worst[spec.name] = max(errs)
    return worst


@pytest.mark.parametrize("change", [
    {},
    {"norm": "rmsnorm", "norm_position": "post", "activation": "relu", "tie_embeddings": False},
    {"norm": "none", "positional": "rope", "n_head": 5, "lora": LoraConfig(rank=2, alpha=3.0, targets=("qkv",))},
    {"residual": False, "lora": LoraConfig(rank=1, alpha=2.0, targets=("proj", "fc2"))},
    {"norm": "batchnorm", "lora": LoraConfig(rank=4, alpha=1.5, targets=("fc", "qkv"))},
])
def test_lora_gradient_matches_finite_differences_with_the_base_frozen(change):
    cfg = replace(ODD, **change)
    m, ids, targets = random_lora_model(cfg)
    bad = {k: e for k, e in worst_fd(m, ids, targets).items() if e >= FD_TOL}
    assert not bad, bad
    assert m.grads.size == m.layout.size == sum(s.size for s in m.layout)  # adapters only


def test_lora_gradient_with_tiled_attention_and_grouped_kv_heads():
    cfg = replace(ODD, attention=replace(ODD.attention, impl="tiled", n_kv_head=1), positional="sinusoidal")
    m, ids, targets = random_lora_model(cfg, seed=3)
    bad = {k: e for k, e in worst_fd(m, ids, targets).items() if e >= FD_TOL}
    assert not bad, bad


def test_lora_dropout_gradient_matches_finite_differences():
    """With the dropout stream reset before each forward the masks are fixed, so differences apply."""
    cfg = replace(ODD, dropout=0.2, lora=LoraConfig(rank=3, alpha=5.0, dropout=0.4))
    m, ids, targets = random_lora_model(cfg, seed=5)
    state = np.random.default_rng(9).bit_generator.state

    def reset():
        m.dropout_rng.bit_generator.state = state

    bad = {k: e for k, e in worst_fd(m, ids, targets, before=reset).items() if e >= FD_TOL}
    assert not bad, bad
    mask = m.acts["h0.attn.qkv.lora_mask"]
    assert 0.2 < np.mean(mask == 0) < 0.6 and np.allclose(mask[mask > 0], 1 / 0.6)
    m.training = False  # eval: no LoRA dropout, the adapter sees the whole input
    a = m.forward(ids, targets)
    assert m.forward(ids, targets) == a


def test_lora_backward_adds_into_what_is_there():
    """Accumulate-only: two backwards without zero_grad between them give twice the gradient."""
    from simulator.kernels.cpu.lora import lora_backward
    rng = np.random.default_rng(0)
    N, d_in, d_out, r = 7, 5, 9, 3
    x, a, b = rng.normal(size=(N, d_in)), rng.normal(size=(r, d_in)), rng.normal(size=(d_out, r))
    dout, u = rng.normal(size=(N, d_out)), x @ a.T
    da, db, dx = np.zeros_like(a), np.zeros_like(b), np.ones((N, d_in))
    for _ in range(2):
        lora_backward(dx, da, db, dout, x, u, a, b, 0.7, np.empty((N, r)), np.empty((N, d_in)))
    # numpy reference of y = 0.7 (x a^T) b^T
    assert np.allclose(db, 2 * 0.7 * dout.T @ u) and np.allclose(da, 2 * 0.7 * (dout @ b).T @ x)
    assert np.allclose(dx, 1 + 2 * 0.7 * dout @ b @ a)


# ------------------------------------------------------------------------- sessions
def tiny(tmp_path=None, **dotted):
    cfg = load_preset("tiny-gpt")
    base = {"model.d_model": 32, "model.n_head": 4, "model.seq_len": 16, "train.batch_size": 4,
            "train.eval_every": 0, "train.stats_every": 0, "optim.lr": 0.01}
    return override(cfg, **{**base, **dotted})


def lora_cfg(**dotted):
    return tiny(**{"model.lora.rank": 4, "model.lora.alpha": 8.0, **dotted})


def test_step_zero_is_the_base_model_exactly_and_only_adapters_train():
    from simulator.session import TrainingSession
    base, lora = TrainingSession(tiny()), TrainingSession(lora_cfg())
    assert np.array_equal(lora.model.frozen, base.model.params)  # one seed, one base
    assert base.step().loss == lora.step().loss  # B starts at zero: the same loss, bit for bit
    frozen = lora.model.frozen.copy()
    for _ in range(3):
        lora.step()
    assert np.array_equal(lora.model.frozen, frozen)  # the base never moves
    b = lora.model.layout.views(lora.model.params)["h0.attn.qkv.lora_B"]
    assert np.abs(b).max() > 0
    n = lora.model.layout.size
    assert lora.model.grads.size == n and all(s.size == n for s in lora.optimizer.state.values())
    assert n < base.model.layout.size / 5
    rows = check_gradients(lora, n_per_tensor=2)  # the session's own gradient check covers the adapters
    assert rows and {r.tensor for r in rows} == {s.name for s in lora.model.layout}
    assert max(r.rel_err for r in rows) < 1e-6


def test_merged_weights_generate_what_the_adapted_model_generates():
    cfg = replace(ODD, seq_len=9)
    m, ids, _ = random_lora_model(cfg, seed=2, batch=(2, 9))
    merged = GPT(base_of(cfg), np.float64)
    for name, w in merged_weights(m.frozen_layout.views(m.frozen), m.layout.views(m.params), cfg).items():
        merged.p[name][...] = w
    m.training = merged.training = False
    m.forward(ids)
    merged.forward(ids)
    assert np.abs(m.logits() - merged.logits()).max() < 1e-12
    # greedy generation token by token through the KV cache: the same tokens, the same logits
    a = CachedDecoder(cfg, np.float64, m.params, frozen=m.frozen)
    b = CachedDecoder(base_of(cfg), np.float64, merged.params)
    seq = [1, 4]
    for _ in range(7):
        la, lb = a.next_logits(np.array(seq)), b.next_logits(np.array(seq))
        assert np.abs(la - lb).max() < 1e-12
        seq.append(int(np.argmax(la)))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny base trained a few steps, saved as a run folder's checkpoint."""
    from simulator.session import TrainingSession
    folder = tmp_path_factory.mktemp("base")
    s = TrainingSession(tiny())
    s.run(3)
    save_checkpoint(folder, s)
    return folder, s


def test_init_from_starts_from_the_base_and_adapters_travel_alone(base_run, tmp_path):
    from simulator.session import TrainingSession
    folder, base = base_run
    s = TrainingSession(lora_cfg(**{"model.init_from": str(folder), "train.seed": 7}))
    assert np.array_equal(s.model.frozen, base.model.params)
    s.run(3)
    adapters = save_adapters(tmp_path / "adapters.npz", s)
    assert adapters.stat().st_size < (folder / "checkpoint.npz").stat().st_size / 4
    again = attach_adapters(folder, adapters)
    assert np.array_equal(again.model.params, s.model.params) and np.array_equal(again.model.frozen, s.model.frozen)
    ids = np.array([[1, 2, 3, 4, 5]] * 4, dtype=np.int32)
    for m in (s.model, again.model):
        m.forward(ids)
    assert np.array_equal(s.model.logits(), again.model.logits())
    # a full fine-tune from the same base, and a LoRA checkpoint as a base: its merged weights
    full = TrainingSession(tiny(**{"model.init_from": str(folder)}))
    assert np.array_equal(full.model.params, base.model.params)
    save_checkpoint(tmp_path / "lora", s)
    from_lora = TrainingSession(tiny(**{"model.init_from": str(tmp_path / "lora")}))
    merged = merged_session_weights(s)
    assert all(np.allclose(from_lora.model.p[k], v, atol=1e-7) for k, v in merged.items())
    with pytest.raises(LoraFileError, match="LoRA run"):
        attach_adapters(tmp_path / "lora", adapters)


def test_a_lora_run_resumes_bit_identically(tmp_path):
    from simulator.session import TrainingSession
    cfg = lora_cfg(**{"model.lora.dropout": 0.3, "model.dropout": 0.1})
    whole = TrainingSession(cfg)
    whole.run(4)
    part = TrainingSession(cfg)
    part.run(2)
    save_checkpoint(tmp_path, part)
    resumed = load_checkpoint(tmp_path)
    resumed.run(2)
    assert np.array_equal(resumed.model.params, whole.model.params)
    assert np.array_equal(resumed.model.frozen, whole.model.frozen)
    assert resumed.last_record.loss == whole.last_record.loss


@pytest.mark.parametrize("dotted", [{}, {"model.lora.dropout": 0.2, "model.lora.targets": ["qkv", "fc2"],
                                         "optim.grad_clip": 1.0, "model.attention.impl": "tiled"}])
def test_the_memory_bill_with_lora_is_exact(dotted):
    from simulator.session import TrainingSession
    cfg = lora_cfg(**dotted)
    s = TrainingSession(cfg)
    s.step()
    m = s.model
    got = MemoryBill(parameters=m.params.nbytes, frozen=m.frozen.nbytes,
                     gradients=m.grads.nbytes + s.preclip_copy_bytes,
                     optimizer=sum(b.nbytes for b in s.optimizer.state.values()) + s.optimizer.decay_mask.nbytes,
                     activations=m.acts.nbytes, activation_gradients=m.grads_acts.nbytes)
    bill = memory_bill(cfg, vocab_size=s.tokenizer.vocab_size)
    assert bill == got == measure(s)[0]
    full = memory_bill(tiny(), vocab_size=s.tokenizer.vocab_size)
    assert bill.frozen == full.parameters and bill.optimizer < full.optimizer / 5


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text, message", [
    ("model:\n  lora: {rank: 0}\n", "model.lora.rank: must be at least 1"),
    ("model:\n  d_model: 32\n  lora: {rank: 33}\n", "model.lora.rank: 33 is larger than min(d_in, d_out) = 32"),
    ("model:\n  lora:\n    rank: 2\n    targets: [qkv, mlp]\n", "model.lora.targets: 'mlp' is not one of"),
    ("model:\n  lora: {alpha: 4}\n", "model.lora.rank: is needed"),
    ("model:\n  init_from: no/such/run\n", "model.init_from:"),
])
def test_bad_lora_settings_are_one_line_with_file_and_line(text, message, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\n" + text)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and f"{path}:" in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_a_mismatched_base_checkpoint_is_refused_in_one_line(base_run, tmp_path, capsys):
    folder, _ = base_run
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\nmodel:\n  d_model: 48\n  n_head: 4\n  seq_len: 16\n  init_from: {folder}\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "p.yaml:6: model.init_from:" in err and "model.d_model 32 there, 48 here" in err, err
    assert len(err.splitlines()) == 1


# ------------------------------------------------------------------------- the lesson
def test_the_finetune_lesson_trains_every_learner_from_one_base():
    from simulator.data.tokenizer import CharTokenizer
    from simulator.lessons import check
    from simulator.lessons.finetune import FinetuneConfig, reversed_words, run, summary, texts
    assert reversed_words("the cat, Sat!\n") == "eht tac, taS!\n"
    old, new = texts(0.1)
    assert old.tokenizer == new.tokenizer == CharTokenizer.from_text(old.tokenizer.decode(old.train_ids))
    cfg = check(FinetuneConfig(d_model=16, n_layer=1, n_head=2, seq_len=16, batch_size=4, base_steps=20, steps=15,
                               ranks=(1, 4), eval_every=5, eval_batches=1))
    frames = run(cfg)
    assert [f.step for f in frames] == list(range(1, 16))
    learners = frames[0].learners
    assert [x.label for x in learners] == ["full", "LoRA r=1", "LoRA r=4", "QLoRA r=4"]
    # A (r x d_in) + B (d_out x r) on qkv (16 -> 48), proj (16 -> 16), fc (16 -> 64), fc2 (64 -> 16)
    assert [x.trainable for x in learners[1:]] == [r * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))
                                                   for r in (1, 4, 4)]
    assert learners[0].trainable > 10 * learners[1].trainable
    assert [x.state_bytes for x in learners] == [x.trainable * 4 * 4 + x.trainable for x in learners]
    assert [p.val_new is None for p in frames[1].points] == [True] * 4 and frames[4].points[0].val_new is not None
    # one base, one seed, B = 0: every float learner's first batch loss is the same, bit for bit (and the NF4 /
    # int4 round trip of the base, measured on the full learner before its first step, left its weights as they
    # were); QLoRA's is the base on its NF4 weights, which the round trip measured too
    assert len({p.loss for p in frames[0].points[:3]}) == 1
    assert frames[0].points[3].loss != frames[0].points[0].loss
    assert abs(frames[0].points[3].loss - frames[0].points[0].loss) < 0.05
    stored = frames[0].stored
    assert list(stored) == ["float32", "nf4", "int4"] and stored["nf4"] != stored["float32"]
    assert abs(stored["nf4"] - stored["float32"]) < 0.05
    # the QLoRA learner before its first step is that NF4 base (double quantization moves it a little)
    (fn, fo), (qn, qo) = frames[0].base_loss["float32"], frames[0].base_loss["nf4"]
    assert (fn, fo) == (frames[0].base_new, frames[0].base_old) and abs(qo - stored["nf4"]) < 2e-3 and qo != fo \
        and qn != fn
    for p in frames[-1].points:  # every learner moved toward the new text
        assert p.val_new < frames[0].base_new
    text = summary(cfg, frames)
    assert "LoRA r=4" in text and f"{learners[2].trainable:,}" in text


def test_heavy_statistics_and_the_memory_command_with_lora(tmp_path, capsys):
    from simulator.session import TrainingSession
    s = TrainingSession(lora_cfg(**{"train.stats_every": 1}))
    record = s.step()
    assert set(record.grad_norms) == {spec.name for spec in s.model.layout}  # the adapters: the only gradients
    assert "h0.norm1.w" in record.norm_params and "h0" in record.unit_spread  # read from the frozen base
    path = tmp_path / "lora.yaml"
    path.write_text("name: lora\nmodel: {d_model: 32, n_head: 4, seq_len: 16, lora: {rank: 2}}\n"
                    "train: {batch_size: 2}\n")
    assert main(["memory", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("frozen base weights"))
    predicted, measured = row.split()[-4], row.split()[-1]
    assert predicted == measured and int(predicted.replace(",", "")) > 0


def test_the_train_command_fine_tunes_from_a_base_run_and_writes_its_adapters(base_run, tmp_path):
    folder, _ = base_run
    path = tmp_path / "ft.yaml"
    path.write_text(f"name: ft\nmodel: {{d_model: 32, n_head: 4, seq_len: 16, init_from: {folder}, "
                    "lora: {rank: 2}}\ntrain: {steps: 2, batch_size: 4, eval_every: 0}\n")
    assert main(["train", "--preset", str(path), "--runs", str(tmp_path / "runs"), "--quiet"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "adapters.npz").is_file()
    again = attach_adapters(folder, run / "adapters.npz")
    with np.load(run / "checkpoint.npz") as z:
        assert np.array_equal(again.model.params, z["params"]) and np.array_equal(again.model.frozen, z["frozen"])
