"""The long-context lesson: bytes by formula against the arrays allocated, the budget, the share of the score
grid local attention computes, the copy task's sequences and windows, the lesson's checks and a small run."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.attention_mask import key_mask
from simulator.lessons import check
from simulator.lessons.long_context import (
    IMPLS,
    MIB,
    CopyFrame,
    CopyTask,
    CostFrame,
    CostPoint,
    LongContextConfig,
    _measure,
    _tile_share,
    attention_bytes,
    run,
    sliding_chunks,
    summary,
    truncation_positions,
)
from simulator.presets import PresetError, parse_any_text

SMALL = LongContextConfig(min_seq_len=128, max_seq_len=256, n_head=1, head_size=16, window=32, global_tokens=4,
                          repeats=1, vocab=6, seq_len=40, copy_distance=14, copy_window=6, copy_global_tokens=1,
                          context_len=8, stride=4, d_model=16, model_heads=2, batch_size=4, steps=6, eval_every=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_bytes_by_formula_are_the_arrays_allocated(impl):
    for T, NH, HS in ((96, 1, 16), (131, 2, 5)):
        p = _measure(impl, T, replace(SMALL, n_head=NH, head_size=HS), np.random.default_rng(0))
        assert p.seconds is not None and p.seconds > 0
        assert p.bytes == p.allocated == attention_bytes(impl, T, NH, HS)
    # by hand: naive keeps 8 (T, HS) arrays and two (T, T) per head, 4 bytes a float
    assert attention_bytes("naive", 1024, 2, 64) == 4 * 2 * (8 * 1024 * 64 + 2 * 1024 * 1024)
    assert attention_bytes("tiled", 1024, 2, 64) == attention_bytes("local", 1024, 2, 64) == 4 * 2 * (8 * 64 + 1) * 1024


def test_naive_is_not_run_over_the_budget_and_says_so():
    cfg = replace(SMALL, memory_budget_mib=1)  # naive at T=256: 2 * 256^2 * 4 bytes = 0.5 MiB, at 512: 2 MiB
    frames = run(replace(cfg, max_seq_len=512), 3)
    naive = [f.point("naive") for f in frames]
    assert [p.seconds is None for p in naive] == [False, False, True]
    assert naive[2].bytes > MIB and naive[2].allocated == 0
    assert all(f.point("tiled").seconds is not None for f in frames)
    assert "over budget" in summary(cfg, frames).splitlines()[4] and "512" in summary(cfg, frames).splitlines()[4]


def test_local_computes_a_band_of_the_grid_that_covers_the_mask():
    T, w, g = 4096, 256, 16
    visible = key_mask(T, "local", w, g).mean()
    share = _tile_share("local", T, w, g)
    assert visible <= share < visible + 0.1 and share < 0.2
    assert 0.5 <= _tile_share("tiled", T, 0, 0) < 0.55 and _tile_share("naive", T, w, g) == 1.0


def test_copy_task_repeats_the_block_and_the_scoring_covers_every_predictable_position_once():
    cfg = SMALL
    data = CopyTask(cfg.vocab, cfg.seq_len, cfg.copy_distance)
    seqs = data.sequences(np.random.default_rng(1), 5)
    D = cfg.copy_distance
    assert seqs.shape == (5, cfg.seq_len + 1) and np.array_equal(seqs[:, D:], seqs[:, :-D])
    assert seqs.max() < cfg.vocab and len(np.unique(seqs)) == cfg.vocab
    x, y = np.zeros((3, 8), np.int32), np.zeros((3, 8), np.int32)
    data.sample_batch("train", np.random.default_rng(2), x, y)
    assert np.array_equal(x[:, 1:], y[:, :-1])
    scored = []
    for s, first in sliding_chunks(cfg):
        assert s + cfg.context_len <= cfg.seq_len
        scored += range(max(s, first), s + cfg.context_len)
    assert sorted(scored) == list(range(cfg.seq_len))  # each position once, by one chunk
    pos = truncation_positions(cfg)
    assert pos[0] == D - 1 and pos[-1] == cfg.seq_len - 1


def test_a_small_run_has_every_frame_and_a_summary():
    frames = run(SMALL)
    cost, copy = frames[:2], frames[2:]
    assert all(isinstance(f, CostFrame) for f in cost) and [f.seq_len for f in cost] == [128, 256]
    assert [f.strategy for f in copy] == ["exact", "local", "truncation", "sliding"]
    for f in copy:
        assert isinstance(f, CopyFrame) and [s for s, _ in f.curve] == [0, 3, 6] and np.isfinite(f.final)
        assert abs(f.curve[0][1] - np.log(SMALL.vocab)) < 0.7  # untrained: near chance
    text = summary(SMALL, frames)
    assert "local / tiled time" in text and "truncation" in text
    three = run(SMALL, 3)  # the first frames of the same lesson: the sweep, then the first strategy
    assert [type(f) for f in three] == [CostFrame, CostFrame, CopyFrame] and three[2].strategy == "exact"
    assert run(SMALL, 3, lambda: True) == []


@pytest.mark.parametrize("text,parts", [
    ("max_seq_len: 512\nmin_seq_len: 1024\n", ["p.yaml:2: max_seq_len: 512 is below min_seq_len 1024"]),
    ("copy_window: 48\ncopy_distance: 48\n", ["copy_window: 48 reaches copy_distance 48"]),
    ("context_len: 50\n", ["context_len: 50 reaches copy_distance 48"]),
    ("stride: 40\n", ["stride: 40 is longer than context_len 32"]),
    ("window: 0\n", ["window: must be"]),
    ("copy_distance: 200\n", ["copy_distance: 200 does not fit in seq_len 160"]),
    ("model_heads: 3\n", ["model_heads: 3 heads of d_model 32"]),
])
def test_the_lessons_mistakes_are_one_line(text, parts):
    with pytest.raises(PresetError) as info:
        parse_any_text("kind: long_context\n" + text, "p.yaml")
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    assert check(LongContextConfig()) == LongContextConfig()


def test_the_card_metrics_read_synthetic_frames():
    from simulator.lessons.cards_metrics import METRICS, Run

    def point(impl, T, s, b, a):
        return CostPoint(impl, T, s, b, a, 0.5)

    frames = [CostFrame(1024, (point("naive", 1024, 0.4, 10, 10), point("tiled", 1024, 0.2, 4, 4),
                               point("local", 1024, 0.1, 4, 4)), 1 << 20),
              CostFrame(2048, (point("naive", 2048, None, 99, 0), point("tiled", 2048, 0.8, 8, 7),
                               point("local", 2048, 0.2, 8, 8)), 1 << 20),
              CopyFrame("exact", ((0, 2.4), (5, 0.3)), 0.3, 40, 2.48), CopyFrame("local", ((0, 2.4), (5, 2.2)), 2.2,
                                                                                 6, 2.48)]
    run_ = Run("synthetic", SMALL, "long_context", frames, 0.0)
    read = {name: METRICS[name].impls["long_context"].read(run_) for name in
            ("local_time_ratio", "naive_longest", "bytes_mismatch", "copy_loss")}
    assert read == {"local_time_ratio": 0.25, "naive_longest": 1024.0, "bytes_mismatch": 1.0,
                    "copy_loss": {"exact": 0.3, "local": 2.2}}
