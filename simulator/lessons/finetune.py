"""Fine-tuning: full vs LoRA at several ranks and QLoRA, from one base, on a visibly different text; and what
it forgets.

A small GPT is pretrained on the built-in corpus (once per process and base setting: it is cached). The new
text is the same corpus with every word spelled backwards ("the cat" -> "eht tac"): the same characters, so
the base's tokenizer and embeddings fit it, but a style the base has never seen. From the same base weights
each learner trains the same steps on the new text: full fine-tuning (every weight, AdamW) and LoRA at each
rank (the base frozen, only the adapters train). Every `eval_every` steps each learner's validation loss is
measured on the new text and on the old one: forgetting is the old loss going up. Each learner's trainable
parameters and the bytes of its training state (trainable weights, their gradients, AdamW's two moments)
come from the memory bill, which equals the session's buffers byte for byte.

QLoRA (`qlora_rank`, 0: left out) is LoRA on a base whose targeted linears are held as NF4 codes only
(`model.lora.base: nf4`): its step 0 is the base with those weights decoded, so the base's validation loss is
measured both ways, float32 and NF4. On the same weights, each tensor's quantization error, NF4 against a
uniform int4 absmax grid of the same block: its histogram (in units of the tensor's standard deviation) and
its mean squared error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from simulator.config import LoraConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, lora_targets_rule
from simulator.data.corpus import builtin_corpus
from simulator.data.dataset import TextDataset
from simulator.i18n import N_, _
from simulator.lessons import Lesson, register
from simulator.rules import in_range, non_empty, non_negative, positive, positive_int
from simulator.textcols import display_width, pad
from simulator.yamlconfig import ParseContext

STYLES = ("reversed_words",)


def reversed_words(text: str) -> str:
    """The text with every run of letters spelled backwards (same characters, same length, new spelling)."""
    return re.sub(r"[A-Za-z]+", lambda m: m.group(0)[::-1], text)


@dataclass(frozen=True)
class FinetuneConfig:
    """The base model, how long it pretrains, and the fine-tuning learners (full and LoRA at `ranks`)."""

    name: str = "finetune-lora"
    description: str = ""
    d_model: int = 32
    n_layer: int = 2
    n_head: int = 4
    seq_len: int = 32
    batch_size: int = 8
    base_steps: int = 200  # pretraining on the built-in corpus
    base_lr: float = 3e-3
    steps: int = 100  # fine-tuning steps of every learner
    full_lr: float = 1e-3
    lora_lr: float = 1e-2  # adapters start at zero and are few: they take a larger step
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16)
    alpha: float = 16.0
    targets: tuple[str, ...] = ("qkv", "proj", "fc", "fc2")
    style: str = "reversed_words"
    eval_every: int = 10
    eval_batches: int = 2
    val_fraction: float = 0.1
    seed: int = 0
    qlora_rank: int = 4  # a QLoRA learner at this rank beside the others (0: none)
    double_quant: bool = True  # its NF4 scales double-quantized (8-bit)


def learner_labels(cfg: FinetuneConfig) -> list[str]:
    """The learners a config runs, in order: full, LoRA at each rank, QLoRA."""
    return ["full", *(f"LoRA r={r}" for r in cfg.ranks), *([f"QLoRA r={cfg.qlora_rank}"] if cfg.qlora_rank else [])]


ERROR_BINS = np.linspace(-0.6, 0.6, 49)  # quantization error / the tensor's std; the outer bins take the rest


@dataclass(frozen=True)
class QuantErrors:
    """Per base tensor, NF4 against int4 absmax (block 64 both): error histograms over ERROR_BINS and MSEs."""

    names: tuple[str, ...]
    edges: np.ndarray  # (bins + 1,), in units of each tensor's standard deviation
    hist: dict[str, dict[str, np.ndarray]]  # grid ("nf4", "int4") -> tensor -> (bins,) share of its weights
    mse: dict[str, dict[str, float]]  # grid -> tensor -> mean squared error (in the weights' own units)
    pooled: dict[str, float]  # grid -> the MSE over every weight of every tensor


@dataclass(frozen=True)
class Learner:
    """One fine-tuning run's setup: its label, rank (0: full), trainable parameters and training-state bytes."""

    label: str
    rank: int
    trainable: int
    state_bytes: int  # trainable weights + their gradients + AdamW's two moments (+ the decay mask)
    total_bytes: int  # the whole bill: frozen base and activations included
    base_bytes: int = 0  # the base weights it holds: all of them (full), frozen in floats (LoRA), floats + NF4
    nf4_bytes: int = 0  # QLoRA: the NF4 part of its base (codes and scales)
    nf4_float32_bytes: int = 0  # QLoRA: the same weights in float32


@dataclass
class FinetunePoint:
    """One learner after one step: the batch loss; validation losses when this step evaluated (else None)."""

    label: str
    loss: float
    val_new: float | None
    val_old: float | None


@dataclass
class FinetuneFrame:
    """One fine-tuning step of every learner; `learners` and the base's losses are the same in every frame."""

    step: int
    points: list[FinetunePoint]
    learners: tuple[Learner, ...]
    base_new: float  # the base model's validation loss on the new text (every learner's step 0)
    base_old: float  # and on the old text
    # the base's old-text loss with its block matrices stored as float32 (itself), NF4 or int4 absmax (block 64)
    stored: dict[str, float]
    # the base's validation loss (new text, old text) as float32 and through the QLoRA learner's NF4 base
    base_loss: dict[str, tuple[float, float]] = field(default_factory=dict)
    quant: QuantErrors | None = None


def _run_config(cfg: FinetuneConfig, steps: int, lr: float, rank: int = 0, nf4: bool = False) -> RunConfig:
    lora = LoraConfig(rank=rank, alpha=cfg.alpha, targets=cfg.targets, base="nf4" if nf4 else "float",
                      double_quant=cfg.double_quant and nf4) if rank else LoraConfig()
    model = ModelConfig(d_model=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head, seq_len=cfg.seq_len, lora=lora)
    return RunConfig(name=cfg.name, model=model,
                     optim=OptimConfig(name="adamw", lr=lr, schedule="constant", weight_decay=0.0),
                     train=TrainConfig(steps=steps, batch_size=cfg.batch_size, seed=cfg.seed, eval_every=0,
                                       eval_batches=cfg.eval_batches, stats_every=0))


@lru_cache(maxsize=4)
def texts(val_fraction: float) -> tuple[TextDataset, TextDataset]:
    """The old text (the built-in corpus) and the new one, as datasets with one tokenizer."""
    old = builtin_corpus()
    return (TextDataset(old, val_fraction, "the built-in corpus"),
            TextDataset(reversed_words(old), val_fraction, "the built-in corpus, words reversed"))


@lru_cache(maxsize=2)
def pretrained_base(d_model, n_layer, n_head, seq_len, batch_size, base_steps, base_lr, seed, val_fraction
                    ) -> np.ndarray:
    """The base weights (a copy) after `base_steps` on the old text; cached per base setting."""
    from simulator.session import TrainingSession  # imported here: it builds the kernels

    cfg = FinetuneConfig(d_model=d_model, n_layer=n_layer, n_head=n_head, seq_len=seq_len, batch_size=batch_size,
                         base_steps=base_steps, base_lr=base_lr, seed=seed, val_fraction=val_fraction)
    session = TrainingSession(_run_config(cfg, base_steps, base_lr), texts(val_fraction)[0])
    session.run(base_steps)
    weights = session.model.params.copy()
    weights.flags.writeable = False
    return weights


def _evaluate_on(session, dataset) -> float:
    """The session's validation loss on another text (the same fixed windows: both texts are as long)."""
    own = session.dataset
    session.dataset = dataset
    try:
        return session.evaluate("val")
    finally:
        session.dataset = own


def run(cfg: FinetuneConfig, steps: int | None = None, cancelled=lambda: False) -> list[FinetuneFrame]:
    """Pretrains (or reuses) the base, then steps every learner `steps` times (default the config's)."""
    from simulator.memory import memory_bill
    from simulator.model.params import build_layout
    from simulator.session import TrainingSession

    steps = cfg.steps if steps is None else steps
    if cancelled():
        return []
    old, new = texts(cfg.val_fraction)
    base = pretrained_base(cfg.d_model, cfg.n_layer, cfg.n_head, cfg.seq_len, cfg.batch_size, cfg.base_steps,
                           cfg.base_lr, cfg.seed, cfg.val_fraction)
    sessions, learners = {}, []
    runs = [(0, False), *((r, False) for r in cfg.ranks), *([(cfg.qlora_rank, True)] if cfg.qlora_rank else [])]
    for (rank, nf4), label in zip(runs, learner_labels(cfg), strict=True):
        rc = _run_config(cfg, steps, cfg.lora_lr if rank else cfg.full_lr, rank, nf4)
        s = TrainingSession(rc, new)
        if rank:  # the base into the frozen buffer; QLoRA quantizes its targeted weights from it
            s.model.load_base(build_layout(s.config.model).views(base))
        else:
            s.model.params[...] = base
        bill = memory_bill(s.config)
        q = s.model.qbase
        learners.append(Learner(label, rank, s.model.layout.size, bill.parameters + bill.gradients + bill.optimizer,
                                bill.total, base_bytes=bill.frozen + bill.quantized if rank else bill.parameters,
                                nf4_bytes=bill.quantized,
                                nf4_float32_bytes=0 if q is None else 4 * sum(q[n].packed.size * 2 for n in q.names)))
        sessions[label] = s
    first = next(iter(sessions.values()))
    base_new, base_old = first.evaluate("val"), _evaluate_on(first, old)  # B = 0: every LoRA learner's too
    stored = {"float32": base_old, **_stored_losses(first, old)}
    base_loss = {"float32": (base_new, base_old)}
    if cfg.qlora_rank:  # B = 0: the QLoRA learner before its first step is the base on its decoded NF4 weights
        s = sessions[learner_labels(cfg)[-1]]
        base_loss["nf4"] = (s.evaluate("val"), _evaluate_on(s, old))
    quant = quant_errors(first.model.p, [s.name for s in first.model.layout
                                         if s.kind == "matrix" and s.name.startswith("h")])
    learners = tuple(learners)
    frames = []
    for t in range(1, steps + 1):
        if cancelled():
            break
        evaluate = t % cfg.eval_every == 0 or t == steps if cfg.eval_every else t == steps
        points = []
        for label, s in sessions.items():
            loss = s.step().loss
            vn, vo = (s.evaluate("val"), _evaluate_on(s, old)) if evaluate else (None, None)
            points.append(FinetunePoint(label, loss, vn, vo))
        frames.append(FinetuneFrame(t, points, learners, base_new, base_old, stored, base_loss, quant))
    return frames


def quant_errors(tensors: dict[str, np.ndarray], names: list[str]) -> QuantErrors:
    """Each tensor quantized to NF4 and to int4 absmax (block 64, no double quantization) and back: the error's
    histogram over ERROR_BINS (values beyond them in the outer bins) and its mean squared error."""
    from simulator.quant.nf4 import dequantize, int4_levels, nf4_levels, quantize

    hist, mse = {"nf4": {}, "int4": {}}, {"nf4": {}, "int4": {}}
    for grid, levels in (("nf4", nf4_levels()), ("int4", int4_levels())):
        for name in names:
            w = tensors[name].astype(np.float64)
            err = dequantize(quantize(w, levels, name=name)).astype(np.float64) - w
            mse[grid][name] = float(np.mean(err ** 2))
            z = np.clip(err / max(float(w.std()), 1e-30), ERROR_BINS[0], ERROR_BINS[-1])
            hist[grid][name] = np.histogram(z, ERROR_BINS)[0] / err.size
    total = sum(tensors[n].size for n in names)
    pooled = {g: sum(per[n] * tensors[n].size for n in names) / total for g, per in mse.items()}
    return QuantErrors(tuple(names), ERROR_BINS.copy(), hist, mse, pooled)


def _stored_losses(session, old) -> dict[str, float]:
    """The base's old-text loss with every block matrix quantized to 4 bits and back: NF4, then int4 absmax.

    `session` is the full fine-tuning learner before its first step (its weights are the base's); they are
    put back afterwards.
    """
    from simulator.quant.nf4 import int4_levels, nf4_levels, roundtrip

    m = session.model
    keep = m.params.copy()
    names = [s.name for s in m.layout if s.kind == "matrix" and s.name.startswith("h")]
    out = {}
    try:
        for label, levels in (("nf4", nf4_levels()), ("int4", int4_levels())):
            tensors, _errors = roundtrip(m.p, names, levels)
            for name in names:
                m.p[name][...] = tensors[name]
            out[label] = _evaluate_on(session, old)
            m.params[...] = keep
    finally:
        m.params[...] = keep
    return out


def learner_name(label: str) -> str:
    """A learner's label as a person reads it ("full" is a word; "LoRA r=4" reads the same in every language)."""
    return _("full") if label == "full" else label


def summary(cfg: FinetuneConfig, frames: list[FinetuneFrame]) -> str:
    """A table: each learner's trainable parameters and state bytes, its new- and old-text loss at the end."""
    if not frames:
        return _("fine-tuning: no steps")
    last = frames[-1]
    table = [[_("learner"), _("trainable"), _("state bytes"), _("new text"), _("old text")]]
    for learner, p in zip(last.learners, last.points, strict=True):
        table.append([learner_name(learner.label), f"{learner.trainable:,}", f"{learner.state_bytes:,}",
                      f"{p.val_new:.4f}", f"{p.val_old:.4f}"])
    widths = [max(w, *(display_width(row[i]) for row in table)) for i, w in enumerate((12, 10, 12, 9, 9))]
    lines = [_("fine-tuning from a base pretrained {base_steps} steps on the built-in corpus, then {steps} steps on it "
               "with every word reversed").format(base_steps=cfg.base_steps, steps=last.step),
             _("base model: validation loss {new:.4f} on the new text, {old:.4f} on the old one").format(
                 new=last.base_new, old=last.base_old),
             _("the base's old-text loss with its block matrices stored in 4 bits (block-wise absmax, 64): "
               "{losses}").format(losses=", ".join(f"{k} {v:.4f}" for k, v in last.stored.items())),
             *_qlora_summary(last),
             *(" ".join(pad(c, w, right=i > 0) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
               for row in table),
             _("state bytes: trainable weights, their gradients and AdamW's two moments (the base of a LoRA "
               "learner is frozen: no gradient, no moments)")]
    return "\n".join(lines)


def _qlora_summary(frame: FinetuneFrame) -> list[str]:
    """The base's loss as float32 and as NF4, QLoRA's base bytes, and the quantization error per tensor."""
    lines = []
    if "nf4" in frame.base_loss:
        (fn, fo), (qn, qo) = frame.base_loss["float32"], frame.base_loss["nf4"]
        q = frame.learners[-1]
        lines += [_("the base's validation loss, float32 vs NF4 (through the QLoRA learner): new text {fn:.4f} vs "
                    "{qn:.4f}, old text {fo:.4f} vs {qo:.4f}").format(fn=fn, qn=qn, fo=fo, qo=qo),
                  _("{learner}: its targeted weights take {nf4:,} bytes as NF4 against {f32:,} in float32 "
                    "({ratio:.3f}); its whole base {base:,} bytes against full fine-tuning's {full:,}").format(
                      learner=q.label, nf4=q.nf4_bytes, f32=q.nf4_float32_bytes,
                      ratio=q.nf4_bytes / q.nf4_float32_bytes, base=q.base_bytes,
                      full=frame.learners[0].base_bytes)]
    if frame.quant is not None:
        qe = frame.quant
        lines.append(_("quantization MSE, NF4 vs int4 absmax (block 64), all block matrices: {nf4:.3e} vs {int4:.3e}; "
                       "per tensor: {tensors}").format(
            nf4=qe.pooled["nf4"], int4=qe.pooled["int4"],
            tensors=", ".join(f"{n} {qe.mse['nf4'][n]:.2e}/{qe.mse['int4'][n]:.2e}" for n in qe.names)))
    return lines


def validate(cfg: FinetuneConfig, ctx: ParseContext) -> FinetuneConfig:
    """Heads that divide the width, ranks an adapter can hold, a known style."""
    if cfg.d_model % cfg.n_head:
        ctx.fail("n_head", _("{n_head} does not divide d_model {d_model}").format(n_head=cfg.n_head,
                                                                                 d_model=cfg.d_model))
    for i, r in enumerate(cfg.ranks):
        if not 1 <= r <= cfg.d_model:
            ctx.fail(f"ranks[{i}]", _("{rank} is not a rank a {d_model}-wide linear can hold").format(
                rank=r, d_model=cfg.d_model), _("use 1 to {d_model}").format(d_model=cfg.d_model))
    if len(set(cfg.ranks)) != len(cfg.ranks):
        ctx.fail("ranks", _("names a rank twice"))
    if cfg.qlora_rank > cfg.d_model:
        ctx.fail("qlora_rank", _("{rank} is not a rank a {d_model}-wide linear can hold").format(
            rank=cfg.qlora_rank, d_model=cfg.d_model),
                 _("use 0 (no QLoRA learner) to {d_model}").format(d_model=cfg.d_model))
    problem = lora_targets_rule(cfg.targets)
    if problem:
        ctx.fail("targets", problem)
    if cfg.style not in STYLES:
        ctx.fail("style", _("{style!r} is not one of {styles}").format(style=cfg.style, styles=", ".join(STYLES)))
    return cfg


_RULES = {"name": non_empty, "seed": non_negative, "eval_every": non_negative, "alpha": positive,
          "qlora_rank": non_negative,
          "base_lr": positive, "full_lr": positive, "lora_lr": positive,
          "val_fraction": in_range(0, 0.5, low_open=True),
          **{k: positive_int for k in ("d_model", "n_layer", "n_head", "seq_len", "batch_size", "base_steps", "steps",
                                       "eval_batches")}}
LESSON = register(Lesson("finetune", N_("Fine-tuning: full vs LoRA vs QLoRA"), FinetuneConfig, _RULES, validate, run,
                         summary, preset="finetune-lora"))

