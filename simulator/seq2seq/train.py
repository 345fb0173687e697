"""The encoder-decoder and the decoder-only GPT on one transduction task, step for step.

Both learners see the same pairs at every step (drawn once by the lesson) and count the loss over the
target tokens only (`<eos>` included); they differ in how the source reaches the target:

* `EncDecLearner`: the encoder reads the source bidirectionally; the decoder reads `<bos> target` causally
  and cross-attends to the encoder's output in every block.
* `PromptLearner`: one causal GPT reads `source <sep> target` (the task as a prompt -> completion): the same
  tokens, one stream, the source positions predicting nothing.

`evaluate` runs a fixed held-out set: the teacher-forced loss and token accuracy, greedy decoding's exact
matches (the whole target and `<eos>` right), and how much attention falls on the source word each target
word comes from (cross-attention for the encoder-decoder, the GPT's self-attention over its prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config import AttentionConfig, ModelConfig, OptimConfig
from simulator.model.gpt import GPT
from simulator.optim import make_optimizer
from simulator.seq2seq.model import EncoderDecoder, weighted_loss
from simulator.seq2seq.task import BOS, EncDecBatch, PromptBatch, Task, pack_encdec, pack_prompt

WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class Shape:
    """The two models' sizes and their training (the GPT's width: `gpt_d_model`)."""

    vocab_size: int
    src_len: int  # the encoder's window (the longest source)
    tgt_len: int  # the decoder's window (the longest target + <eos>)
    d_model: int
    n_head: int
    enc_layers: int
    dec_layers: int
    gpt_layers: int
    gpt_d_model: int
    norm_position: str
    batch_size: int
    lr: float
    warmup: int

    @property
    def prompt_len(self) -> int:
        """The GPT's window: source <sep> target (the last target token is only predicted)."""
        return self.src_len + self.tgt_len


def _cfg(s: Shape, n_layer: int, d_model: int, seq_len: int, mask: str) -> ModelConfig:
    return ModelConfig(vocab_size=s.vocab_size, d_model=d_model, n_layer=n_layer, n_head=s.n_head, seq_len=seq_len,
                       norm_position=s.norm_position, attention=AttentionConfig(impl="naive", mask=mask))


def encoder_config(s: Shape) -> ModelConfig:
    return _cfg(s, s.enc_layers, s.d_model, s.src_len, "none")


def decoder_config(s: Shape) -> ModelConfig:
    return _cfg(s, s.dec_layers, s.d_model, s.tgt_len, "causal")


def prompt_config(s: Shape, d_model: int | None = None) -> ModelConfig:
    return _cfg(s, s.gpt_layers, d_model or s.gpt_d_model, s.prompt_len, "causal")


def gpt_params(s: Shape, d_model: int) -> int:
    """Parameters of the decoder-only GPT at width d_model."""
    from simulator.model.params import build_layout

    return build_layout(prompt_config(s, d_model)).size


def encdec_params(s: Shape) -> int:
    from simulator.model.params import build_layout
    from simulator.seq2seq.model import cross_entries

    dec = decoder_config(s)
    return build_layout(encoder_config(s)).size + build_layout(dec).size + sum(
        int(np.prod(shape)) for _, shape, _ in cross_entries(dec))


def matched_width(s: Shape) -> int:
    """The GPT width (a multiple of n_head) whose parameter count is nearest the encoder-decoder's."""
    target = encdec_params(s)
    widths = range(s.n_head, 8 * s.d_model + 1, s.n_head)
    return min(widths, key=lambda d: (abs(gpt_params(s, d) - target), d))


def _lr(s: Shape, steps: int) -> float:
    return s.lr * min(1.0, (steps + 1) / max(s.warmup, 1))


def _optim(s: Shape) -> OptimConfig:
    return OptimConfig(name="adamw", lr=s.lr, weight_decay=WEIGHT_DECAY, schedule="constant")


@dataclass(frozen=True)
class Evaluation:
    """One learner on the held-out pairs."""

    loss: float  # teacher-forced cross-entropy per target token
    token_accuracy: float  # teacher-forced: share of target tokens whose top prediction is right
    exact_match: float  # greedy decoding: share of pairs whose whole target (and <eos>) comes out right
    alignment: np.ndarray  # (n_layer, NH): mean attention on the aligned source word, per target word
    hits: np.ndarray  # (n_layer, NH): share of target words whose most attended source word is the aligned one
    chance: float  # the mean alignment mass of uniform attention over what the query may read


def _align_stats(att: np.ndarray, align: np.ndarray, visible: np.ndarray, src_len: np.ndarray):
    """Sums over the aligned query positions of one batch: (mass on the aligned key per head, argmax hits per
    head, how many positions, the sum of chance masses).

    att (B, NH, Tq, Tk); align (B, Tq) the aligned source position (-1: none), the source being keys
    [0, src_len[b]) (the encoder's positions; the head of a GPT's prompt); visible (B, Tq): how many keys
    the query may read, so 1 / visible is the mass uniform attention would give the aligned word.
    """
    b, t = np.nonzero(align >= 0)
    j = align[b, t]
    mass = att[b, :, t, j].sum(axis=0)  # (NH,)
    in_source = np.arange(att.shape[-1])[None, :] < src_len[b][:, None]  # (k, Tk)
    hits = np.array([np.sum(np.argmax(np.where(in_source, att[b, h, t], -1.0), axis=1) == j)
                     for h in range(att.shape[1])], float)
    return mass, hits, len(b), float(np.sum(1.0 / visible[b, t]))


class EncDecLearner:
    """The encoder-decoder with one AdamW over each part's flat buffer."""

    def __init__(self, s: Shape, seed: int):
        self.shape = s
        self.model = EncoderDecoder(encoder_config(s), decoder_config(s))
        self.model.init_weights(np.random.default_rng([seed, 0]))
        self.opts = [make_optimizer(_optim(s), part.layout) for part in (self.model.encoder, self.model.decoder)]
        self.steps = 0

    @property
    def n_params(self) -> int:
        return self.model.n_params

    def forward(self, b: EncDecBatch) -> None:
        self.model.encode(b.src, b.src_len)
        self.model.decode(b.tgt_in, b.tgt_len)

    def step(self, b: EncDecBatch) -> float:
        """One update on the batch: its loss before it."""
        self.forward(b)
        loss = weighted_loss(self.model.decoder, b.tgt_out, b.weights)
        self.model.backward()
        lr = _lr(self.shape, self.steps)
        for opt, part in zip(self.opts, (self.model.encoder, self.model.decoder), strict=True):
            opt.step(part.params, part.grads, lr)
        self.steps += 1
        return loss

    def greedy(self, b: EncDecBatch) -> np.ndarray:
        """(B, Tt) the decoder's greedy output, one position a pass (the encoder runs once)."""
        M, Tt = self.model, self.shape.tgt_len
        M.encode(b.src, b.src_len)
        tgt = np.zeros_like(b.tgt_in)
        tgt[:, 0] = BOS
        out = np.zeros_like(b.tgt_in)
        for t in range(Tt):  # causal: what follows position t does not change its logits
            M.decode(tgt)
            out[:, t] = np.argmax(M.decoder.logits()[:, t], axis=-1)
            if t + 1 < Tt:
                tgt[:, t + 1] = out[:, t]
        return out

    def evaluate(self, batches: list[EncDecBatch], shown: int = 0) -> tuple[Evaluation, np.ndarray, np.ndarray]:
        """The held-out evaluation; of row `shown` of batch 0 the cross-attention maps (n_layer, NH, Tt, Te) and
        the greedy output (Tt,)."""
        M, L = self.model, self.shape.dec_layers
        loss = right = n_tok = exact = n_pairs = 0.0
        mass = np.zeros((L, self.shape.n_head))
        hits = np.zeros_like(mass)
        count = chance = 0.0
        maps = first = None
        for i, b in enumerate(batches):
            self.forward(b)
            real = b.weights > 0
            n = int(real.sum())
            loss += weighted_loss(M.decoder, b.tgt_out, b.weights, grads=False) * n
            pred = np.argmax(M.decoder.acts["logits"], axis=-1)
            right += int(np.sum((pred == b.tgt_out.reshape(-1)) & real))
            n_tok += n
            visible = np.broadcast_to(b.src_len[:, None], b.align.shape)
            for layer in range(L):
                m_, h_, c_, ch_ = _align_stats(M.decoder.cross_attention(layer), b.align, visible, b.src_len)
                mass[layer] += m_
                hits[layer] += h_
            count += c_
            chance += ch_
            if i == 0:
                maps = np.stack([M.decoder.cross_attention(layer)[shown] for layer in range(L)])
            out = self.greedy(b)
            first = out[shown].copy() if i == 0 else first
            ok = (out == b.tgt_out) | (np.arange(out.shape[1])[None, :] >= b.tgt_len[:, None])
            exact += int(np.sum(ok.all(axis=1)))
            n_pairs += len(b.src_len)
        return Evaluation(loss / n_tok, right / n_tok, exact / n_pairs, mass / count, hits / count,
                          chance / count), maps, first


class PromptLearner:
    """The decoder-only GPT given `source <sep> target`."""

    def __init__(self, s: Shape, seed: int):
        self.shape = s
        self.model = GPT(prompt_config(s))
        self.model.init_weights(np.random.default_rng([seed, 0]))
        self.opt = make_optimizer(_optim(s), self.model.layout)
        self.steps = 0

    @property
    def n_params(self) -> int:
        return self.model.layout.size

    def forward(self, b: PromptBatch) -> None:
        M = self.model
        M.ensure_shape(*b.ids.shape)
        M.set_lengths(b.lengths)
        M.ids[...] = b.ids
        for op in M.ops:
            op.forward()

    def step(self, b: PromptBatch) -> float:
        self.forward(b)
        loss = weighted_loss(self.model, b.targets, b.weights)
        self.model.backward()
        self.opt.step(self.model.params, self.model.grads, _lr(self.shape, self.steps))
        self.steps += 1
        return loss

    def greedy(self, b: PromptBatch) -> np.ndarray:
        """(B, Tt) the GPT's greedy completion after each row's `<sep>` (one forward a token)."""
        M, Tt, T = self.model, self.shape.tgt_len, self.shape.prompt_len
        ids = b.ids.copy()
        B = len(ids)
        rows, start = np.arange(B), b.src_len  # <sep> at position n predicts the first target word
        ids[np.arange(T)[None, :] > start[:, None]] = 0
        out = np.zeros((B, Tt), np.int32)
        M.ensure_shape(B, T)
        for k in range(Tt):
            M.set_lengths(None)
            M.ids[...] = ids
            for op in M.ops:
                op.forward()
            out[:, k] = np.argmax(M.logits()[rows, start + k], axis=-1)
            nxt = start + k + 1
            ok = nxt < T
            ids[rows[ok], nxt[ok]] = out[ok, k]
        return out

    def evaluate(self, batches: list[PromptBatch], targets: list[np.ndarray], lengths: list[np.ndarray],
                 shown: int = 0) -> tuple[Evaluation, np.ndarray, np.ndarray]:
        """The held-out evaluation (`targets` (B, Tt) and `lengths` per batch: the gold completions), and the
        self-attention maps (n_layer, NH, T, T) and greedy completion (Tt,) of row `shown` of batch 0."""
        M, L = self.model, self.shape.gpt_layers
        loss = right = n_tok = exact = n_pairs = 0.0
        mass = np.zeros((L, self.shape.n_head))
        hits = np.zeros_like(mass)
        count = chance = 0.0
        maps = first = None
        for i, (b, gold, glen) in enumerate(zip(batches, targets, lengths, strict=True)):
            self.forward(b)
            real = b.weights > 0
            n = int(real.sum())
            loss += weighted_loss(M, b.targets, b.weights, grads=False) * n
            pred = np.argmax(M.acts["logits"], axis=-1)
            right += int(np.sum((pred == b.targets.reshape(-1)) & real))
            n_tok += n
            visible = np.broadcast_to(np.arange(1, b.ids.shape[1] + 1)[None, :], b.align.shape)  # causal
            for layer in range(L):
                m_, h_, c_, ch_ = _align_stats(M.acts[f"h{layer}.att"], b.align, visible, b.src_len)
                mass[layer] += m_
                hits[layer] += h_
            count += c_
            chance += ch_
            if i == 0:
                maps = np.stack([M.acts[f"h{layer}.att"][shown] for layer in range(L)])
            out = self.greedy(b)
            first = out[shown].copy() if i == 0 else first
            ok = (out == gold) | (np.arange(out.shape[1])[None, :] >= glen[:, None])
            exact += int(np.sum(ok.all(axis=1)))
            n_pairs += len(b.src_len)
        return Evaluation(loss / n_tok, right / n_tok, exact / n_pairs, mass / count, hits / count,
                          chance / count), maps, first


def batches_of(task: Task, pairs, s: Shape) -> tuple[list[EncDecBatch], list[PromptBatch]]:
    """The pairs (a whole number of batches of the training shape) packed for each learner."""
    B = s.batch_size
    assert len(pairs) % B == 0, (len(pairs), B)
    chunks = [pairs[i:i + B] for i in range(0, len(pairs), B)]
    return ([pack_encdec(task, c, s.src_len, s.tgt_len) for c in chunks],
            [pack_prompt(task, c, s.prompt_len) for c in chunks])
