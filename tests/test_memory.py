"""The memory bill computed before allocating equals, byte for byte, what a built session holds."""

from dataclasses import replace

import pytest

from simulator.lessons import lesson_of
from simulator.memory import available_bytes, memory_bill
from simulator.presets import list_presets, load_any, override
from simulator.session import TrainingSession

GPT_PRESETS = [p.name for p in list_presets() if lesson_of(load_any(p.path)) is None]


def measured(s: TrainingSession) -> dict[str, int]:
    m, opt = s.model, s.optimizer
    s.step()  # the clip phase makes its pre-clip copy on the first step
    grads = m.grads.nbytes + (s._unclipped.nbytes if s._unclipped is not None else 0)
    return {"parameters": m.params.nbytes, "gradients": grads,
            "optimizer": sum(b.nbytes for b in opt.state.values()) + opt.decay_mask.nbytes,
            "activations": m.acts.nbytes, "activation_gradients": m.grads_acts.nbytes}


def small(cfg):
    """The preset's wiring at a size that builds quickly."""
    return replace(cfg, train=replace(cfg.train, batch_size=min(cfg.train.batch_size, 4), eval_every=0,
                                      stats_every=0))


@pytest.mark.parametrize("name", GPT_PRESETS)
def test_the_bill_of_every_shipped_preset_is_what_the_session_allocates(name):
    cfg = small(load_any(name))
    s = TrainingSession(cfg)
    bill = memory_bill(cfg, vocab_size=s.tokenizer.vocab_size)
    assert {k: getattr(bill, k) for k in measured(s)} == measured(TrainingSession(cfg))


@pytest.mark.parametrize("change", [
    {"model.attention.impl": "tiled"}, {"model.positional": "rope"}, {"model.norm": "none"},
    {"model.norm": "batchnorm", "model.norm_position": "post"}, {"model.residual": False},
    {"model.attention.n_kv_head": 1}, {"optim.name": "sgd"}, {"optim.name": "rmsprop", "optim.momentum": 0.9},
    {"optim.grad_clip": 1.0}, {"train.dtype": "float64"}, {"model.tie_embeddings": False},
])
def test_the_bill_follows_every_structural_choice(change):
    cfg = small(override(load_any("tiny-gpt"), **change))
    s = TrainingSession(cfg)
    bill = memory_bill(cfg, vocab_size=s.tokenizer.vocab_size)
    assert {k: getattr(bill, k) for k in measured(s)} == measured(TrainingSession(cfg))


def test_a_model_that_cannot_fit_is_refused_at_check_with_one_line(tmp_path, capsys):
    from main import main
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\nmodel: {d_model: 16384, n_layer: 96, n_head: 128, seq_len: 64}\n")
    assert main(["check", str(huge)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs" in err and "GiB" in err and "available" in err, err
    assert available_bytes() is None or available_bytes() > 0
