"""The KV cache: token-by-token decoding equals recomputing the whole sequence; the session uses it safely."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from simulator.config import AttentionConfig, ModelConfig, OptimConfig, RunConfig, SamplingConfig, TrainConfig
from simulator.kv_cache import CachedDecoder, KVCache, kv_cache_bytes_per_token
from simulator.model.gpt import GPT
from simulator.reference import reference_forward
from simulator.sampling import generate
from simulator.session import TrainingSession

TINY = ModelConfig(vocab_size=13, d_model=36, n_layer=2, n_head=6, seq_len=9, mlp_ratio=2)  # head size 6


def model_with_weights(cfg: ModelConfig, seed=0, dtype=np.float64) -> GPT:
    """A model with large random weights (std 0.4), gains around 1."""
    model = GPT(cfg, dtype)
    rng = np.random.default_rng(seed)
    for spec in model.layout:
        w = rng.normal(0.0, 0.4, spec.shape)
        model.p[spec.name][...] = 1.0 + w if spec.kind == "norm" and spec.name.endswith(".w") else w
    return model


@pytest.mark.parametrize("n_kv,positional", list(itertools.product((None, 3, 1), ("learned", "sinusoidal",
                                                                                   "none", "rope"))))
def test_decoding_with_the_cache_equals_recomputing_every_position(n_kv, positional):
    impl = "tiled" if positional in ("none", "rope") else "naive"  # the prompt's forward runs either kernel
    cfg = replace(TINY, positional=positional, attention=AttentionConfig(n_kv_head=n_kv, impl=impl))
    model = model_with_weights(cfg, seed=len(positional) + (n_kv or 0))
    ids = np.random.default_rng(1).integers(0, cfg.vocab_size, cfg.seq_len).astype(np.int32)
    model.forward(ids[None, :])
    whole = model.logits()[0].copy()  # (T, V): position t sees tokens 0..t only
    for prompt in (1, 4):  # a one-token prompt, and a longer one whose keys come from the whole forward
        decoder = CachedDecoder(cfg, np.float64, model.params, model.buffers)
        modes = []
        for n in range(prompt, cfg.seq_len + 1):
            got = decoder.next_logits(ids[:n])
            modes.append(decoder.last_mode)
            assert np.abs(got - whole[n - 1]).max() < 1e-12, f"position {n - 1}, prompt {prompt}"
        assert modes == ["prefill"] + ["cached"] * (cfg.seq_len - prompt)
        assert decoder.cache.length == cfg.seq_len


@pytest.mark.parametrize("positional", ["sinusoidal", "none", "rope"])
def test_fixed_positions_decode_past_the_trained_length(positional):
    """Positions that are functions (not parameters) exist past seq_len: the cache runs on, as the reference does."""
    cfg = replace(TINY, positional=positional, attention=AttentionConfig(n_kv_head=2))
    model = model_with_weights(cfg, seed=3)
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, 3 * cfg.seq_len).astype(np.int32)
    want, _ = reference_forward({k: v.copy() for k, v in model.p.items()}, cfg, ids[None, :])  # (1, 27, V)
    decoder = CachedDecoder(cfg, np.float64, model.params, capacity=ids.size)
    for n in range(1, ids.size + 1):
        assert np.abs(decoder.next_logits(ids[:n]) - want[0, n - 1]).max() < 1e-10, f"position {n - 1}"
    fresh = CachedDecoder(cfg, np.float64, model.params, capacity=ids.size)  # a prompt longer than seq_len
    assert np.abs(fresh.next_logits(ids[:20]) - want[0, 19]).max() < 1e-10
    with pytest.raises(ValueError, match="learned positions stop at seq_len"):
        CachedDecoder(TINY, np.float64, model_with_weights(TINY).params, capacity=10)


def test_past_seq_len_the_decoder_recomputes_a_window_and_bidirectional_always_recomputes():
    model = model_with_weights(TINY, seed=5)
    ids = np.random.default_rng(3).integers(0, TINY.vocab_size, 14).astype(np.int32)
    decoder = CachedDecoder(TINY, np.float64, model.params)
    for n in range(1, 15):
        got = decoder.next_logits(ids[:n])
        model.forward(ids[None, max(0, n - TINY.seq_len):n])  # the last seq_len tokens, from position 0
        assert np.abs(got - model.logits()[0, -1]).max() < 1e-12
        assert decoder.last_mode == ("prefill" if n == 1 else "cached" if n <= TINY.seq_len else "window")
    cfg = replace(TINY, attention=AttentionConfig(mask="none"))
    model = model_with_weights(cfg, seed=6)
    decoder = CachedDecoder(cfg, np.float64, model.params)
    for n in (3, 4, 5):  # a new token changes every earlier position: no cache can be right
        got = decoder.next_logits(ids[:n])
        model.forward(ids[None, :n])
        assert decoder.last_mode == "recompute" and np.array_equal(got, model.logits()[0, -1])


def test_cache_bytes_per_token_for_mha_gqa_mqa():
    cfg = ModelConfig(vocab_size=10, d_model=64, n_layer=3, n_head=8, seq_len=16)  # head size 8
    per_head = 2 * 3 * 8 * 4  # k and v, 3 layers, 8 numbers of 4 bytes
    assert kv_cache_bytes_per_token(cfg) == {"model": 8 * per_head, "MHA": 8 * per_head, "MQA": per_head}
    gqa = replace(cfg, attention=AttentionConfig(n_kv_head=2))
    assert kv_cache_bytes_per_token(gqa, np.float64) == {"model": 2 * 2 * per_head, "MHA": 2 * 8 * per_head,
                                                         "GQA": 2 * 2 * per_head, "MQA": 2 * per_head}
    cache = KVCache(replace(gqa, vocab_size=10), np.float32, 16)
    cache.length = 5
    assert 2 * cache.k[:, :, :cache.length].nbytes == 5 * kv_cache_bytes_per_token(gqa)["model"]


def session(dtype="float64", **model) -> TrainingSession:
    cfg = RunConfig(model=ModelConfig(d_model=24, n_layer=2, n_head=4, seq_len=12, **model),
                    optim=OptimConfig(lr=3e-3, warmup_steps=2, decay_steps=40),
                    train=TrainConfig(batch_size=3, seed=4, eval_every=0, stats_every=0, dtype=dtype),
                    sampling=SamplingConfig(prompt="the ", max_new=20, temperature=0.9, seed=2))
    return TrainingSession(cfg)


def recomputed(s: TrainingSession):
    """next_logits without a cache: a fresh model over the same weights, the whole (windowed) context each time."""
    twin = GPT(s.config.model, s.model.dtype, shared_params=s.model.params, shared_buffers=s.model.buffers)
    twin.training = False
    twin.dropout, twin.dropout_mode = s.config.model.dropout, s.config.model.dropout_mode  # classic: scaled

    def next_logits(ids):
        twin.forward(np.asarray(ids, np.int32)[None, -s.config.model.seq_len:])
        return twin.logits()[0, -1].astype(np.float64)

    return next_logits


def test_session_generation_with_the_cache_matches_recomputation():
    s = session(attention=AttentionConfig(n_kv_head=2), positional="rope")
    s.step()
    text, events = generate(s.next_logits, s.tokenizer, s.config.sampling)  # 4 + 20 tokens: past seq_len 12
    plain, plain_events = generate(recomputed(s), s.tokenizer, s.config.sampling)
    assert text == plain and len(text) == 20
    for a, b in zip(events, plain_events, strict=True):
        assert np.abs(a.tempered - b.tempered).max() < 1e-12


def test_session_cache_follows_new_weights_and_loaded_states():
    s = session()
    s.step()
    ids = s.tokenizer.encode("the cat ")
    before = s.next_logits(ids[:5])
    state = s.state_arrays()
    s.next_logits(ids[:6])
    s.step()  # new weights: the cached keys and values are stale
    assert np.abs(s.next_logits(ids[:7]) - recomputed(s)(ids[:7])).max() < 1e-12
    s.load_state_arrays(state)  # back to the old weights, same step count as a moment ago
    assert np.abs(s.next_logits(ids[:5]) - before).max() < 1e-12
    assert np.abs(s.next_logits(ids[:6]) - recomputed(s)(ids[:6])).max() < 1e-12
    no_dropout = s.next_logits(ids[:7])
    s.apply_config(replace(s.config, model=replace(s.config.model, dropout=0.5, dropout_mode="classic")))
    changed = s.next_logits(ids[:7])  # classic dropout scales activations at inference: new keys and values
    assert np.abs(changed - recomputed(s)(ids[:7])).max() < 1e-12
    assert np.abs(changed - no_dropout).max() > 1e-3


@pytest.mark.parametrize("window, n_global, prompt", [(3, 0, 1), (3, 2, 1), (4, 1, 6), (2, 3, 2)])
def test_a_local_mask_decodes_from_a_window_sized_cache(window, n_global, prompt):
    """Under attention.mask local the cache keeps the global tokens and a ring of the last `window`: the logits
    still equal the whole forward's at every position, in (n_global + window) tokens of memory."""
    att = AttentionConfig(n_kv_head=3, mask="local", window=window, global_tokens=n_global)
    cfg = replace(TINY, attention=att)
    model = model_with_weights(cfg, seed=window + 7 * n_global)
    ids = np.random.default_rng(4).integers(0, cfg.vocab_size, cfg.seq_len).astype(np.int32)
    model.forward(ids[None, :])
    whole = model.logits()[0].copy()
    decoder = CachedDecoder(cfg, np.float64, model.params, model.buffers)
    assert decoder.cache.k.shape[2] == n_global + window  # slots, not seq_len positions
    assert decoder.cache.nbytes == 2 * cfg.n_layer * cfg.kv_heads * (n_global + window) * cfg.head_size * 8
    modes = []
    for n in range(prompt, cfg.seq_len + 1):
        got = decoder.next_logits(ids[:n])
        modes.append(decoder.last_mode)
        assert np.abs(got - whole[n - 1]).max() < 1e-12, f"position {n - 1}"
    assert modes == ["prefill"] + ["cached"] * (cfg.seq_len - prompt)


@pytest.mark.parametrize("positional", ["sinusoidal", "rope"])
def test_a_local_mask_generates_past_seq_len_in_the_same_memory(positional):
    att = AttentionConfig(mask="local", window=4, global_tokens=1)
    cfg = replace(TINY, positional=positional, attention=att)
    model = model_with_weights(cfg, seed=11)
    ids = np.random.default_rng(5).integers(0, cfg.vocab_size, 3 * cfg.seq_len).astype(np.int32)
    long = GPT(replace(cfg, seq_len=ids.size), np.float64, shared_params=model.params)  # the same weights, 27 wide
    long.training = False
    long.forward(ids[None, :])
    want = long.logits()[0]
    decoder = CachedDecoder(cfg, np.float64, model.params, capacity=ids.size)
    assert decoder.cache.k.shape[2] == 5
    for n in range(1, ids.size + 1):
        assert np.abs(decoder.next_logits(ids[:n]) - want[n - 1]).max() < 1e-10, f"position {n - 1}"
    assert decoder.last_mode == "cached"
