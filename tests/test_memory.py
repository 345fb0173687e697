"""The memory bill computed before allocating equals, byte for byte, what a built session holds; the `memory`
command prints both, and its calculator reproduces the textbook figures of models we cannot run."""

import re
from dataclasses import replace

import pytest

from main import main
from simulator.lessons import lesson_of
from simulator.memory import MemoryBill, activation_kinds, available_bytes, measure, memory_bill, stored_bytes
from simulator.memory_calc import (
    GB,
    LLAMA,
    adamw_mixed,
    adamw_pure16,
    layer_activations,
    parameter_count,
    tensor_sizes,
)
from simulator.presets import list_presets, load_any, override
from simulator.session import TrainingSession

GPT_PRESETS = [p.name for p in list_presets() if lesson_of(load_any(p.path)) is None]


def measured(s: TrainingSession) -> dict[str, int]:
    """The session's real buffers by row, read here (not by the module under test), after one step: the clip
    phase makes its pre-clip copy on the first."""
    m, opt = s.model, s.optimizer
    s.step()
    grads = m.grads.nbytes + s.preclip_copy_bytes
    # LoRA's frozen base, and QLoRA's NF4 part of it: every packed code and scale array by itself
    nf4 = [] if m.qbase is None else [a for q in m.qbase.weights.values() for a in
                                      (q.packed, q.absmax, q.scale_codes, q.scale_absmax) if a is not None]
    means = 0 if m.qbase is None else 4 * sum(q.scale_codes is not None for q in m.qbase.weights.values())
    return {"parameters": m.params.nbytes, "gradients": grads,
            "optimizer": sum(b.nbytes for b in opt.state.values()) + opt.decay_mask.nbytes,
            "activations": m.acts.nbytes, "activation_gradients": m.grads_acts.nbytes,
            "frozen": 0 if m.frozen is None else m.frozen.nbytes, "quantized": sum(a.nbytes for a in nf4) + means}


def small(cfg):
    """The preset's wiring at a size that builds quickly."""
    return replace(cfg, train=replace(cfg.train, batch_size=min(cfg.train.batch_size, 4), eval_every=0,
                                      stats_every=0))


@pytest.mark.parametrize("name", GPT_PRESETS)
def test_the_bill_of_every_shipped_preset_is_what_the_session_allocates(name):
    cfg = small(load_any(name))
    s = TrainingSession(cfg)
    assert memory_bill(cfg, vocab_size=s.tokenizer.vocab_size) == MemoryBill(**measured(s))


@pytest.mark.parametrize("change", [
    {"model.attention.impl": "tiled"}, {"model.positional": "rope"}, {"model.norm": "none"},
    {"model.norm": "batchnorm", "model.norm_position": "post"}, {"model.residual": False},
    {"model.attention.n_kv_head": 1}, {"optim.name": "sgd"}, {"optim.name": "rmsprop", "optim.momentum": 0.9},
    {"optim.grad_clip": 1.0}, {"train.dtype": "float64"}, {"model.tie_embeddings": False},
    {"model.lora.rank": 4}, {"model.lora.rank": 4, "model.lora.base": "nf4"},
    {"model.lora.rank": 2, "model.lora.base": "nf4", "model.lora.double_quant": True, "model.lora.block": 32,
     "model.lora.targets": ["qkv", "fc2"], "train.dtype": "float64"},
])
def test_the_bill_follows_every_structural_choice(change):
    cfg = small(override(load_any("tiny-gpt"), **change))
    s = TrainingSession(cfg)
    assert memory_bill(cfg, vocab_size=s.tokenizer.vocab_size) == MemoryBill(**measured(s))


def test_a_model_that_cannot_fit_is_refused_at_check_with_one_line(tmp_path, capsys):
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\nmodel: {d_model: 16384, n_layer: 96, n_head: 128, seq_len: 64}\n")
    assert main(["check", str(huge)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs" in err and "GiB" in err and "available" in err, err
    assert available_bytes() is None or available_bytes() > 0


def table_rows(out: str) -> dict[str, list[str]]:
    """The bill's table of `memory PRESET`: row label -> its cells (predicted, size, measured)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("row "))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith("measured:"):
            break
        label, *cells = re.split(r"\s{2,}", line.strip())
        rows[label] = cells
    return rows


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_the_memory_table_of_tiny_gpt_puts_each_predicted_row_next_to_the_measured_one(capsys):
    assert main(["memory", "tiny-gpt"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert {"parameters", "activations kept for the backward", "activation gradients", "total"} <= set(rows)
    for label, (predicted, _size, seen) in rows.items():
        assert number(predicted) == number(seen), label
    # the same bytes as a session this test builds and reads itself
    cfg = load_any("tiny-gpt")
    s = TrainingSession(cfg)
    real = measured(s)
    assert number(rows["total"][0]) == sum(real.values()) == memory_bill(cfg, s.tokenizer.vocab_size).total
    assert number(rows["parameters"][2]) == real["parameters"]
    # tiny-gpt: naive attention, 2 layers x batch 16 x 4 heads x 64^2 probabilities of 4 bytes
    assert "attention: naive" in out and "tiled would keep" in out
    probs = next(cells for label, cells in rows.items() if label.startswith("attention probabilities"))
    assert number(probs[0]) == 2 * 16 * 4 * 64 * 64 * 4
    # the weights in other formats: float16 half of float32, NF4 4.25 bits per weight
    n = real["parameters"] // 4
    assert f"{2 * n:,}" in out and "NF4" in out and "4.25 bits per weight" in out


@pytest.mark.parametrize("impl", ["naive", "tiled"])
def test_the_activations_by_kind_of_site_are_the_arena_s(impl):
    cfg = small(override(load_any("tiny-gpt"), **{"model.attention.impl": impl}))
    s = TrainingSession(cfg)
    s.step()
    bill, kinds = measure(s)
    model = s.config.model
    assert kinds == activation_kinds(model, 4, model.seq_len, 4)
    assert sum(kinds.values()) == bill.activations
    B, H, T, L = 4, model.n_head, model.seq_len, model.n_layer
    if impl == "naive":  # the probabilities are B·H·T² a layer; tiled keeps a log-sum-exp per row instead
        assert kinds["probs"] == L * B * H * T * T * 4 and kinds["lse"] == 0
    else:
        assert kinds["lse"] == L * B * H * T * 4 and kinds["probs"] == kinds["datt"] == 0


def test_a_tiled_preset_says_what_naive_attention_would_keep(tmp_path, capsys):
    tiled = tmp_path / "tiled.yaml"
    tiled.write_text("name: tiled\nmodel: {d_model: 16, n_layer: 1, n_head: 2, seq_len: 16, attention: {impl: tiled}}\n"
                     "train: {batch_size: 2}\n")
    assert main(["memory", str(tiled)]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert "attention: tiled" in out and "naive would keep the probabilities (4,096 bytes" in out  # 1·2·2·16²·4
    lse = next(cells for label, cells in rows.items() if label.startswith("log-sum-exps"))
    assert number(lse[0]) == number(lse[2]) == 1 * 2 * 2 * 16 * 4
    assert not any(label.startswith("attention probabilities") for label in rows)


def test_a_model_too_large_to_build_is_billed_and_not_built(tmp_path, capsys):
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\nmodel: {d_model: 16384, n_layer: 96, n_head: 128, seq_len: 64}\n")
    assert main(["memory", str(huge)]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows["total"][2].startswith("not built: it needs") and rows["parameters"][2] == "-"
    assert number(rows["parameters"][0]) > 10 ** 12


def test_the_calculator_counts_llama_parameters_from_their_shapes():
    counts = {k: parameter_count(m) for k, m in LLAMA.items()}
    assert counts["7b"] == 6_738_415_616  # the count Llama's 7B is published with
    for key, published in (("7b", 6.74e9), ("13b", 13.0e9), ("70b", 69.0e9)):
        assert abs(counts[key] / published - 1) < 0.01, key
    assert len(tensor_sizes(LLAMA["7b"])) == 2 + 9 * 32 + 1


def test_the_calculator_reproduces_the_textbook_figures():
    n7, n70 = parameter_count(LLAMA["7b"]), parameter_count(LLAMA["70b"])
    pure, mixed = adamw_pure16(n7), adamw_mixed(n7)
    assert pure.weights == 2 * n7 and abs(pure.weights / GB - 13.5) < 0.05  # "14 GB" at the nominal 7e9
    assert pure.gradients == pure.weights
    assert pure.moments == 2 * pure.weights  # AdamW's m and v in 16-bit: "28 GB"
    assert mixed.weights == mixed.gradients == 2 * n7
    assert mixed.total - mixed.weights - mixed.gradients == 12 * n7  # fp32 master + two fp32 moments: "84 GB"
    assert abs(stored_bytes(tensor_sizes(LLAMA["70b"]), "float16") / GB - 138) < 0.5  # "140 GB" in 16-bit
    nf4 = stored_bytes(tensor_sizes(LLAMA["70b"]), "nf4")
    assert nf4 == n70 // 2 + n70 // 64 * 2  # 4-bit codes + a float16 scale per 64 (every tensor divides by 64)
    assert abs(nf4 / GB / 35 - 1) < 0.05  # "~35 GB in 4-bit"


def test_the_activations_follow_korthikanti_s_formula_worked_by_hand():
    # 7B, batch 1, seq 2048: s·b·h = 2048·1·4096 = 8,388,608; 5·a·s/h = 5·32·2048/4096 = 80
    assert layer_activations(2048, 1, 4096, 32, recompute=False) == 8_388_608 * (34 + 80) == 956_301_312
    assert layer_activations(2048, 1, 4096, 32, recompute=True) == 8_388_608 * 34 == 285_212_672
    # batch 2, seq 1000, h 512, 8 heads: 1000·2·512·(34 + 5·8·1000/512) = 34,816,000 + 80,000,000
    assert layer_activations(1000, 2, 512, 8, recompute=False) == 114_816_000


def test_the_calculator_prints_both_conventions_and_says_which_is_which(capsys):
    assert main(["memory", "--what-if", "7B", "--batch", "1", "--seq", "2048"]) == 0
    out = capsys.readouterr().out
    for seen in ("6.74e9", "decimal GB", "13.48", "pure 16-bit", "mixed precision", "fp32 master weights",
                 "12 bytes per parameter", "80.86 GB", "84 GB", "Korthikanti", "956,301,312", "30.60 GB", "9.13 GB"):
        assert seen in out, seen


@pytest.mark.parametrize("argv", [["memory", "--what-if", "9b"], ["memory", "no-such-preset"],
                                  ["memory", "optimizer-race"], ["memory"], ["memory", "--what-if", "7b", "--seq", "0"],
                                  ["memory", "tiny-gpt", "--batch", "2"]])
def test_bad_memory_input_is_one_line_and_exit_2(argv, capsys):
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own refusals (an unknown --what-if)
        status = stop.code
    assert status == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and not captured.out, captured.err
    if "optimizer-race" in argv:
        assert "lesson preset" in captured.err and "no GPT" in captured.err
