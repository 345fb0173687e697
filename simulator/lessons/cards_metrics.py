"""What a lesson card's claims can measure: one `Metric` per name, read from a run's records or frames.

A run (`Run`) is a GPT's `StepRecord`s (with its session, for measurements of the trained model) or
a lesson's frames. A metric is either per step (a series of (step, value), read `at` the last, best
or first record, or at a given step, optionally averaged) or one value for the whole run; a keyed
metric maps a layer, tensor or learner to a value (`of` picks one, `reduce` folds them). Each
metric names how it is read for every kind of run it applies to, so a claim on a kind that does not
record it is refused when the preset is read, never when it runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from simulator.i18n import _, ngettext

COMPARISONS = ("<", "<=", ">", ">=", "within", "is")
REDUCERS = ("mean", "min", "max", "product")


# --------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One finished run a card measures: its config, the records (GPT) or frames (lesson), and how long it took."""

    label: str  # what a person reads: the preset's name, with any settings changed
    cfg: Any
    kind: str  # "gpt" or a lesson's kind
    frames: list  # StepRecords (gpt) or the lesson's frames
    seconds: float
    session: Any = None  # the GPT's TrainingSession after the run (for evaluations of the trained model)
    cache: dict = field(default_factory=dict)  # whole-run measurements computed once

    def once(self, name: str, compute: Callable[[], Any]):
        """A measurement of the run, computed on first use."""
        if name not in self.cache:
            self.cache[name] = compute()
        return self.cache[name]

    def describe(self) -> str:
        """'prenorm-deep: 60 steps, seed 1337, 4.2 s' (and where it diverged)."""
        from simulator.lessons.cards import seed_of

        seed = seed_of(self.cfg)
        n = len(self.frames)
        count = {"flash_trace": lambda: ngettext("{n} tile pair", "{n} tile pairs", n),
                 "worked_examples": lambda: ngettext("{n} example", "{n} examples", n),
                 "tokenizers": lambda: ngettext("{n} merge", "{n} merges", n),
                 "tfidf": lambda: ngettext("{n} fitted table", "{n} fitted tables", n),
                 }.get(self.kind, lambda: ngettext("{n} step", "{n} steps", n))()
        parts = [count.format(n=n)]
        if seed is not None:
            parts.append(_("seed {seed}").format(seed=seed))
        parts.append(_("{seconds:.1f} s").format(seconds=self.seconds))
        if self.kind == "gpt" and self.frames and self.frames[-1].nonfinite is not None:
            parts.append(_("diverged: {problem}").format(problem=self.frames[-1].nonfinite.sentence()))
        return f"{self.label}: {', '.join(parts)}"


def train_run(cfg, steps: int | None, label: str, cancelled=lambda: False) -> Run:
    """Trains `cfg` headless for `steps` steps (None: its own default) and keeps what the claims read."""
    from simulator.lessons import lesson_of

    t0 = time.perf_counter()
    lesson = lesson_of(cfg)
    if lesson is not None:
        frames = lesson.run(cfg, steps, cancelled)
        return Run(label, cfg, lesson.kind, frames, time.perf_counter() - t0)
    from simulator.session import TrainingSession

    session = TrainingSession(cfg)
    records = session.run(steps or cfg.train.steps, on_record=lambda _r: not cancelled())
    last = records[-1] if records else None
    if last is not None and last.nonfinite is None and last.val_loss is None:
        last.val_loss = session.evaluate("val")  # every claim about the end of a run can read it
    return Run(label, cfg, "gpt", records, time.perf_counter() - t0, session)


# ------------------------------------------------------------------------------------------ metrics
class Impl(NamedTuple):
    """How a metric is read from one kind of run."""

    read: Callable[[Run], Any]  # per step: [(step, value or None)]; whole run: the value
    keys: Callable[[Any], list[str]] | None = None  # the keys a config's runs will have (checked when read)
    needs_key: bool = False  # a learner must be named: averaging optimizers says nothing


@dataclass(frozen=True)
class Metric:
    """A quantity a claim can compare: what it is, and how each kind of run gives it."""

    name: str
    help: str
    impls: dict[str, Impl]
    per_step: bool = True
    keyed: bool = False
    key_name: str = ""  # what a key is: "sublayer", "learner", "weight matrix"
    text: bool = False  # a name (compared with `is`), not a number
    best: str = "min"  # the best value: the lowest (losses) or the highest (accuracy)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.impls)


METRICS: dict[str, Metric] = {}


def metric(name: str, help: str, impls: dict, **kw) -> Metric:
    METRICS[name] = m = Metric(name, help, impls, **kw)
    return m


def metric_kinds(name: str) -> tuple[str, ...]:
    """The kinds of run that record metric `name`."""
    return METRICS[name].kinds


# GPT runs: the StepRecords
def _series(attr: str, convert=lambda v: v) -> Impl:
    return Impl(lambda run: [(r.step, None if getattr(r, attr) in (None, {}) else convert(getattr(r, attr)))
                             for r in run.frames])


def _heads(a) -> dict[str, float]:
    return {f"head{i}": float(v) for i, v in enumerate(np.asarray(a))}


def _past_only_loss(run: Run, n: int = 24) -> float:
    """Mean loss of each next character of the validation text predicted from the past only (as generation does)."""
    s = run.session
    val = s.dataset.val_ids[:n + 1]
    out = []
    for t in range(1, len(val)):
        z = s.next_logits(val[:t]).astype(np.float64)
        out.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[val[t]])
    return float(np.mean(out))


def _gpt_nonfinite(run: Run):
    last = run.frames[-1] if run.frames else None
    return None if last is None or last.nonfinite is None else last.nonfinite


# deep-MLP runs: MLPRecords
def _mlp_names(cfg) -> list[str]:
    from simulator.lessons.deep_mlp import weight_names

    return weight_names(cfg)


def _mlp_keyed(attr: str) -> Impl:
    return Impl(lambda run: [(r.step, dict(zip(_mlp_names(run.cfg), getattr(r, attr), strict=False)))
                             for r in run.frames], keys=_mlp_names)


def _mlp(attr: str) -> Impl:
    return Impl(lambda run: [(r.step, getattr(r, attr)) for r in run.frames])


# learners (optimizer race, sparse FTRL): frames hold one point per learner
def _labels(cfg) -> list[str]:
    return [e.label for e in cfg.optimizers]


def _learners(attr: str, points=lambda frame: frame) -> Impl:
    return Impl(lambda run: [(points(f)[0].step, {p.label: float(getattr(p, attr)) for p in points(f)})
                             for f in run.frames], keys=_labels, needs_key=True)


def _race_paths(run: Run) -> dict[str, np.ndarray]:
    """Label -> (steps + 1, 2) positions, the start included."""
    start = np.asarray(run.cfg.start, dtype=np.float64)
    return {label: np.vstack([start] + [f[i].position for f in run.frames])
            for i, label in enumerate(_labels(run.cfg))}


def _race_overshoot(run: Run) -> dict[str, float]:
    from simulator.lessons.optimizer_race import FUNCTIONS

    x_min = FUNCTIONS[run.cfg.function].minimum[0]
    return {k: float(p[:, 0].max() - x_min) for k, p in _race_paths(run).items()}


def _race_flips(run: Run) -> dict[str, float]:
    return {k: float(np.mean(np.sign(p[1:, 1]) != np.sign(p[:-1, 1]))) for k, p in _race_paths(run).items()}


def _race_first_rate_ratio(run: Run) -> dict[str, float]:
    out = {}
    for p in run.frames[0]:
        rate = -p.update / p.gradient  # the step's effective rate per coordinate
        out[p.label] = float(rate[0] / rate[1])
    return out


# tiled attention: TileSteps
def _flash_output_error(run: Run) -> float:
    from simulator.lessons.flash_trace import inputs

    *_, reference = inputs(run.cfg)
    out = np.full_like(reference, np.nan)
    for st in run.frames:  # a later pair of the same query tile holds the rows' newer state
        if not st.skipped:
            out[st.q_rows[0]:st.q_rows[1]] = st.out
    return float(np.max(np.abs(out - reference)))


def _flash_ratio(run: Run) -> float:
    from simulator.lessons.flash_trace import naive_attention_traffic

    last = run.frames[-1]
    return (last.reads + last.writes) / naive_attention_traffic(run.cfg.seq_len, run.cfg.head_size).floats


# fine-tuning: FinetuneFrames, one point per learner (full, LoRA r=..., QLoRA r=...)
def _ft_labels(cfg) -> list[str]:
    from simulator.lessons.finetune import learner_labels
    return learner_labels(cfg)


def _ft_nf4_share(run: Run) -> float:
    """QLoRA's NF4 base (codes and scales) over the same weights in float32."""
    q = next(lr for lr in run.frames[-1].learners if lr.label.startswith("QLoRA"))
    return q.nf4_bytes / q.nf4_float32_bytes


def _ft_learners(run: Run) -> dict:
    return {lr.label: lr for lr in run.frames[-1].learners} if run.frames else {}


def _ft_share(attr: str) -> Impl:
    """Per learner, its `attr` over full fine-tuning's."""
    def read(run: Run) -> dict[str, float]:
        learners = _ft_learners(run)
        return {k: getattr(lr, attr) / getattr(learners["full"], attr) for k, lr in learners.items()}
    return Impl(read, _ft_labels, True)


def _ft_val(attr: str) -> Impl:
    """Per evaluated step, each learner's validation loss `attr` (val_new, val_old)."""
    return Impl(lambda run: [(f.step, None if getattr(f.points[0], attr) is None else
                              {p.label: getattr(p, attr) for p in f.points}) for f in run.frames], _ft_labels)


def _ft_forgetting(run: Run) -> dict[str, float]:
    """Per learner, its old-text validation loss at the last evaluation minus the base's."""
    last = next(f for f in reversed(run.frames) if f.points[0].val_old is not None)
    return {p.label: p.val_old - last.base_old for p in last.points}


# tokenizers: MergeSteps; the sentence's splits come from the config
def _tok_keys(cfg) -> list[str]:
    return [str(n) for n in cfg.learned]


def _tok_splits(run: Run) -> dict[str, list[str]]:
    """Learned tokens (as the preset's `learned` names them) -> the sentence's pieces at that size."""
    def compute():
        from simulator.data.tokenizer_view import splits_at
        from simulator.data.tokenizers import min_vocab_size
        from simulator.lessons.tokenizers import lesson_text

        c = run.cfg
        text, _ = lesson_text(c.corpus, c.path)
        base = min_vocab_size(c.tokenizer, text)
        at = splits_at(c.tokenizer, text, c.sentence, sorted({base + k for k in c.learned}))
        return {str(k): at[base + k] for k in c.learned}
    return run.once("splits", compute)


def _tok_rises(run: Run) -> float:
    """How many times the sentence's token count goes up from one size to the next larger one."""
    counts = [len(p) for _, p in sorted(_tok_splits(run).items(), key=lambda kv: int(kv[0]))]
    return float(sum(b > a for a, b in zip(counts, counts[1:], strict=False)))


# TF-IDF: one frame, the fitted Tfidf
def _tfidf_idf_error(run: Run) -> float:
    """The largest |idf - its formula|, df counted again from the count matrix."""
    t = run.frames[0]
    n, df = t.counts.shape[0], (t.counts > 0).sum(axis=0).astype(np.float64)
    formula = np.log((1 + n) / (1 + df)) + 1 if t.idf_variant == "smooth" else np.log(n / df)
    return float(np.max(np.abs(t.idf - formula)))


def _tfidf_topic_ratio(run: Run) -> float:
    """Mean document cosine within a topic (a document with itself left out) over the mean across topics."""
    if run.cfg.corpus != "world":
        raise LookupError(f"documents have topics only in corpus world, this run's is {run.cfg.corpus}")
    from simulator.data.world import world_documents

    topics = np.array([d.topic for d in world_documents()])
    sim = run.frames[0].document_similarity()  # (D, D)
    if len(topics) != len(sim):
        raise LookupError(f"{len(topics)} world documents but {len(sim)} paragraphs: cannot tell their topics")
    same = topics[:, None] == topics[None, :]
    return float(sim[same & ~np.eye(len(topics), dtype=bool)].mean() / sim[~same].mean())


def _tfidf_pairs(cfg) -> list[str]:
    return [" ".join(p.split()).lower() for p in cfg.pairs]


def _tfidf_term_cosine(run: Run) -> dict[str, float]:
    t, out = run.frames[0], {}
    for pair in _tfidf_pairs(run.cfg):
        a, b = pair.split()
        if a in t.vocab and b in t.vocab:
            out[pair] = float(t.term_similarity(a, b))
    return out


_ALL_TRAINED = ("gpt", "deep_mlp", "leaf_flower")
metric("loss", "the training loss of a step (a GPT, a deep MLP: the batch before the update; leaf/flower: the "
       "example before its update)", {
           "gpt": _series("loss"), "deep_mlp": _mlp("loss"),
           "leaf_flower": Impl(lambda run: [(k, u.loss) for k, u in enumerate(run.frames, 1)])})
metric("loss_after", "leaf/flower: the example's loss after the step's update", {
    "leaf_flower": Impl(lambda run: [(k, u.loss_after) for k, u in enumerate(run.frames, 1)])})
metric("val_loss", "the validation loss (evaluated in eval mode; the last step always has one)", {
    "gpt": _series("val_loss"), "deep_mlp": _mlp("val_loss")})
metric("val_accuracy", "deep MLP: the share of validation points classified right", {
    "deep_mlp": _mlp("val_accuracy")}, best="max")
metric("grad_norm", "the global gradient norm before clipping", {"gpt": _series("grad_norm"),
                                                                 "deep_mlp": _mlp("grad_norm")})
metric("identity_fraction", "GPT: per sublayer (h0.attn, h0.mlp, ...), the share of its input that reaches its "
       "output along the skip path (heavy statistics: every train.stats_every steps)",
       {"gpt": _series("identity_fraction")}, keyed=True, key_name="sublayer")
metric("unit_spread", "GPT: per block (h0, ...), the largest difference between any MLP unit's weights and unit 0's",
       {"gpt": _series("unit_spread")}, keyed=True, key_name="block")
metric("attention_entropy", "GPT: per head (head0, ...) of the watched layer, the mean entropy of its attention "
       "rows in nats", {"gpt": _series("attention_entropy", _heads)}, keyed=True, key_name="head")
metric("attention_saturated", "GPT: per head of the watched layer, the share of rows whose top probability "
       "exceeds 0.99", {"gpt": _series("attention_saturated", _heads)}, keyed=True, key_name="head")
metric("tensor_grad_norm", "the gradient norm of one tensor: a GPT parameter (h0.attn.qkv.w, ...; heavy "
       "statistics) or a deep-MLP weight matrix (l0.w, l1.w, ..., out.w)",
       {"gpt": _series("grad_norms"), "deep_mlp": _mlp_keyed("grad_norms")}, keyed=True, key_name="tensor")
metric("stream_grad_norm", "deep MLP: ||dL/dh|| of each layer's output h (keyed by the layer's weights, l0.w, "
       "l1.w, ...): the backward signal",
       {"deep_mlp": _mlp_keyed("stream_grad_norms")}, keyed=True, key_name="layer")
metric("input_output_grad_ratio", "deep MLP: the input layer's weight gradient norm over the output layer's", {
    "deep_mlp": Impl(lambda run: [(r.step, r.grad_norms[0] / r.grad_norms[-1]) for r in run.frames])})
metric("stream_grad_ratio", "deep MLP: ||dL/dh|| of the first layer's output over that of the last hidden layer", {
    "deep_mlp": Impl(lambda run: [(r.step, r.stream_grad_norms[0] / r.stream_grad_norms[-1]) for r in run.frames])})
metric("grad_norm_spread", "deep MLP: the largest over the smallest weight-gradient norm of the layers below the "
       "output", {"deep_mlp": Impl(lambda run: [(r.step, max(r.grad_norms[:-1]) / min(r.grad_norms[:-1]))
                                                for r in run.frames])})
metric("clipped_fraction", "the share of steps on which gradient clipping fired", {
    "gpt": Impl(lambda run: float(np.mean([r.clipped for r in run.frames]))),
    "deep_mlp": Impl(lambda run: float(np.mean([r.clipped for r in run.frames])))}, per_step=False)
metric("steps_run", "how many steps (or tile pairs) the run made before it ended or diverged", {
    k: Impl(lambda run: float(len(run.frames))) for k in (*_ALL_TRAINED, "flash_trace")}, per_step=False)
metric("nonfinite_step", "the step that became NaN/Inf (infinite when the run never did)", {
    "gpt": Impl(lambda run: float(_gpt_nonfinite(run).step + 1) if _gpt_nonfinite(run) else math.inf),
    "deep_mlp": Impl(lambda run: next((float(r.step + 1) for r in run.frames if r.nonfinite), math.inf))},
    per_step=False)
metric("nonfinite_tensor", "the first tensor that became NaN/Inf, in the order the step computes them ('none' "
       "when the run stayed finite)", {
           "gpt": Impl(lambda run: _gpt_nonfinite(run).tensor if _gpt_nonfinite(run) else "none"),
           "deep_mlp": Impl(lambda run: next((r.first_nonfinite for r in run.frames if r.nonfinite), "none"))},
       per_step=False, text=True)
metric("train_eval_loss", "GPT: the training split's loss of the trained model, in eval mode (no dropout)", {
    "gpt": Impl(lambda run: run.once("train", lambda: run.session.evaluate("train")))}, per_step=False)
metric("generalization_gap", "GPT: validation loss minus training loss of the trained model, both in eval mode", {
    "gpt": Impl(lambda run: run.once("val", lambda: run.session.evaluate("val"))
                - run.once("train", lambda: run.session.evaluate("train")))}, per_step=False)
def _sample(run: Run) -> list:
    """The token events of `run.cfg.sampling` (its rule, prompt, seed, max_new) drawn from the trained model.

    Generated once per run; runs that differ only in their sampling settings share the trained session
    (`cards.cached_run`), so a claim's `other_settings: {sampling.temperature: 0.5}` trains nothing twice."""
    from simulator.sampling import generate

    def draw():
        return generate(run.session.next_logits, run.session.tokenizer, run.cfg.sampling)[1]

    return run.once("sample", draw)


metric("sample_entropy", "GPT: mean entropy (nats) of the distributions the sampled tokens were drawn from, after "
       "temperature and the filters (sampling settings of the run)", {
           "gpt": Impl(lambda run: float(np.mean([e.entropy for e in _sample(run)])))}, per_step=False)
metric("sample_kept", "GPT: mean number of tokens the filters (top-k, top-p, min-p) keep per sampled token", {
    "gpt": Impl(lambda run: float(np.mean([len(e.after_min_p) for e in _sample(run)])))}, per_step=False)
metric("sample_distinct", "GPT: distinct tokens among the sampled ones (sampling.max_new of them)", {
    "gpt": Impl(lambda run: float(len({e.token for e in _sample(run)})))}, per_step=False)
metric("sample_token_prob", "GPT: mean probability the sampled tokens had in the distribution they were drawn from", {
    "gpt": Impl(lambda run: float(np.mean([e.prob for e in _sample(run)])))}, per_step=False)


def _early_stop(run: Run):

    """The run's early stop (simulator/early_stopping.py), or None when it trained all its steps."""
    return next((r.early_stop for r in run.frames if r.early_stop is not None), None)


metric("early_stop_step", "GPT: the step at which early stopping ended the run (infinite when it never did)", {
    "gpt": Impl(lambda run: float(_early_stop(run).step) if _early_stop(run) else math.inf)}, per_step=False)
metric("early_stop_best_step", "GPT: the step of the best validation loss that early stopping kept (infinite when "
       "it never stopped)", {
           "gpt": Impl(lambda run: float(_early_stop(run).best_step) if _early_stop(run) else math.inf)},
       per_step=False)
metric("early_stop_best_loss", "GPT: the best validation loss early stopping kept (infinite when it never stopped)",
       {"gpt": Impl(lambda run: _early_stop(run).best_loss if _early_stop(run) else math.inf)}, per_step=False)
metric("past_only_loss", "GPT: the loss of the first 24 validation characters, each predicted from the ones "
       "before it only (as generation sees text)", {
           "gpt": Impl(lambda run: run.once("past", lambda: _past_only_loss(run)))}, per_step=False)
metric("zero_fraction", "sparse FTRL: per learner, the share of weights that are exactly 0.0",
       {"sparse_logreg": _learners("zero_fraction", lambda f: f.points)}, keyed=True, key_name="learner")
metric("learner_val_loss", "sparse FTRL: per learner, the validation log-loss",
       {"sparse_logreg": _learners("val_loss", lambda f: f.points)}, keyed=True, key_name="learner")
metric("position_loss", "optimizer race: per racer, the function value at its position",
       {"optimizer_race": _learners("loss")}, keyed=True, key_name="learner")
metric("overshoot", "optimizer race: per racer, how far past the minimum's x its path ever got (negative: never "
       "reached it)", {"optimizer_race": Impl(_race_overshoot, _labels, True)},
       per_step=False, keyed=True, key_name="learner")
metric("y_sign_flips", "optimizer race: per racer, the share of steps on which y changed sign (a zig-zag across "
       "the ravine is 1)", {"optimizer_race": Impl(_race_flips, _labels, True)},
       per_step=False, keyed=True, key_name="learner")
metric("first_rate_ratio", "optimizer race: per racer, its first step's effective rate along x over that along y "
       "(-update / gradient)", {"optimizer_race": Impl(_race_first_rate_ratio, _labels, True)},
       per_step=False, keyed=True, key_name="learner")
metric("bytes_moved", "tiled attention: bytes read from and written to slow memory so far (4 per float)", {
    "flash_trace": Impl(lambda run: [(st.index + 1, 4.0 * (st.reads + st.writes)) for st in run.frames])})
metric("traffic_ratio", "tiled attention: the walk's slow-memory traffic over standard attention's", {
    "flash_trace": Impl(_flash_ratio)}, per_step=False)
metric("output_error", "tiled attention: the largest difference between the tiled output and standard "
       "attention's", {"flash_trace": Impl(_flash_output_error)}, per_step=False)
metric("skipped_fraction", "tiled attention: the share of tile pairs skipped whole (above the causal diagonal)", {
    "flash_trace": Impl(lambda run: float(np.mean([st.skipped for st in run.frames])))}, per_step=False)
metric("zscore_mean", "worked examples: the mean of the z-scores", {
    "worked_examples": Impl(lambda run: float(np.mean(run.frames[0].z)))}, per_step=False)
metric("zscore_std", "worked examples: the standard deviation of the z-scores (divide by n)", {
    "worked_examples": Impl(lambda run: float(np.std(run.frames[0].z)))}, per_step=False)
metric("kernel_error", "worked examples: the largest difference between the z-scores by hand and the engine's "
       "layernorm kernel", {"worked_examples": Impl(
           lambda run: float(np.max(np.abs(np.subtract(run.frames[0].z, run.frames[0].kernel_z)))))},
       per_step=False)
metric("layernorm_row_mean", "worked examples: the largest |mean| of a LayerNorm-ed row of the grades table", {
    "worked_examples": Impl(lambda run: float(np.abs(run.frames[1].layernorm.mean(axis=1)).max()))}, per_step=False)
metric("batchnorm_row_mean", "worked examples: the largest |mean| of a BatchNorm-ed row of the grades table", {
    "worked_examples": Impl(lambda run: float(np.abs(run.frames[1].batchnorm.mean(axis=1)).max()))}, per_step=False)
metric("loss_drop", "leaf/flower: the example's loss before the first step minus after it", {
    "leaf_flower": Impl(lambda run: float(run.frames[0].loss - run.frames[0].loss_after))}, per_step=False)
metric("weight_change", "leaf/flower: new minus old of the followed weight in the first step (-lr x grad)", {
    "leaf_flower": Impl(lambda run: float(run.frames[0].new - run.frames[0].old))}, per_step=False)

metric("trainable_share", "fine-tuning: per learner (full, LoRA r=4, ...), its trainable parameters over full "
       "fine-tuning's", {"finetune": _ft_share("trainable")}, per_step=False, keyed=True, key_name="learner")
metric("state_bytes_share", "fine-tuning: per learner, the bytes of its training state (trainable weights, their "
       "gradients, AdamW's moments) over full fine-tuning's", {"finetune": _ft_share("state_bytes")},
       per_step=False, keyed=True, key_name="learner")
metric("val_new", "fine-tuning: per learner, the validation loss on the new text (words reversed)", {
    "finetune": _ft_val("val_new")}, keyed=True, key_name="learner")
metric("val_old", "fine-tuning: per learner, the validation loss on the old text (the base's corpus)", {
    "finetune": _ft_val("val_old")}, keyed=True, key_name="learner")
metric("forgetting", "fine-tuning: per learner, its validation loss on the old text at the last evaluation minus "
       "the base model's (how much it forgot)", {"finetune": Impl(_ft_forgetting, _ft_labels)},
       per_step=False, keyed=True, key_name="learner")
metric("quant_mse", "fine-tuning: the mean squared error of the base's block matrices stored as nf4 or int4 (absmax, "
       "block 64) and decoded, over every weight", {"finetune": Impl(lambda run: dict(run.frames[0].quant.pooled),
                                                                    lambda cfg: ["nf4", "int4"], True)},
       per_step=False, keyed=True, key_name="4-bit grid")
metric("base_val_loss", "fine-tuning: the base model's validation loss on its own (old) text, as float32 and as "
       "nf4 (the QLoRA learner before its first step)", {"finetune": Impl(
           lambda run: {k: v[1] for k, v in run.frames[0].base_loss.items()},
           lambda cfg: ["float32", "nf4"] if cfg.qlora_rank else ["float32"], True)},
       per_step=False, keyed=True, key_name="storage")
metric("nf4_bytes_share", "fine-tuning: the QLoRA learner's NF4 base (packed codes and scales) over the same weights "
       "in float32", {"finetune": Impl(_ft_nf4_share)}, per_step=False)
metric("merge_count", "tokenizers: how often the pair joined by each learned token occurred (step k: the k-th "
       "merge)", {"tokenizers": Impl(lambda run: [(m.index + 1, float(m.count)) for m in run.frames])}, best="max")
metric("sentence_tokens", "tokenizers: per vocabulary size (tokens learned on top of the base alphabet, as the "
       "preset's learned lists them), how many tokens the sentence splits into",
       {"tokenizers": Impl(lambda run: {k: float(len(p)) for k, p in _tok_splits(run).items()}, _tok_keys, True)},
       per_step=False, keyed=True, key_name="size")
metric("chars_per_token", "tokenizers: per vocabulary size, the sentence's characters over its tokens", {
    "tokenizers": Impl(lambda run: {k: len(run.cfg.sentence) / len(p) for k, p in _tok_splits(run).items()},
                       _tok_keys, True)}, per_step=False, keyed=True, key_name="size")
metric("sentence_token_rises", "tokenizers: how many times the sentence's token count goes up from one vocabulary "
       "size to the next larger one (0: it never does)", {"tokenizers": Impl(_tok_rises)}, per_step=False)
metric("idf_formula_error", "TF-IDF: the largest difference between a word's idf and its formula (smooth: "
       "ln((1 + n) / (1 + df)) + 1, raw: ln(n / df)), df counted again from the documents", {
           "tfidf": Impl(_tfidf_idf_error)}, per_step=False)
metric("topic_cosine_ratio", "TF-IDF (corpus world): the mean cosine between two documents of one topic over "
       "that between documents of different topics", {"tfidf": Impl(_tfidf_topic_ratio)}, per_step=False)
metric("term_cosine", "TF-IDF: per word pair of the preset's pairs ('king queen'), the cosine between the two "
       "words' TF-IDF columns (their weights in each document)", {"tfidf": Impl(_tfidf_term_cosine, _tfidf_pairs,
                                                                                 True)},
       per_step=False, keyed=True, key_name="pair")

# word2vec: W2VFrames
_RELATIONS_W2V = ("gender", "plural", "capital")


def _analogy(run: Run):
    return [(f.step, {rel: solved / asked for rel, solved, asked in f.accuracy if asked}) for f in run.frames]


metric("analogy_accuracy", "word2vec: per relation of the corpus (gender, plural, capital), the share of analogies "
       "b - a + c whose nearest vector is the expected word", {
           "word2vec": Impl(_analogy, keys=lambda cfg: list(_RELATIONS_W2V))}, keyed=True, key_name="relation",
       best="max")
metric("w2v_loss", "word2vec: the mean negative-sampling loss per prediction over a chunk of training", {
    "word2vec": Impl(lambda run: [(f.step, f.loss) for f in run.frames])})


# knowledge distillation: DistillFrames, one point per student
def _distill_labels(cfg) -> list[str]:
    from simulator.lessons.distill import LABELS

    return list(LABELS)


def _students(read) -> Impl:
    def series(run: Run):
        out = []
        for f in run.frames:
            values = {p.label: read(p) for p in f.points if read(p) is not None}
            out.append((f.step, values or None))
        return out
    return Impl(series, keys=_distill_labels, needs_key=True)


metric("student_val_loss", "distillation: per student (hard labels, distilled), the validation cross-entropy "
       "with the next token (every eval_every steps)", {"distill": _students(lambda p: p.val)},
       keyed=True, key_name="learner")
metric("student_kl", "distillation: per student, the batch's KL(teacher_T || student_T) at the lesson's "
       "temperature (measured for both; only the distilled student minimises it)",
       {"distill": _students(lambda p: p.terms.kl)}, keyed=True, key_name="learner")
metric("teacher_val_loss", "distillation: the teacher's validation cross-entropy", {
    "distill": Impl(lambda run: float(run.frames[0].teacher_val))}, per_step=False)


# long context: CostFrames (one per T), then CopyFrames (one per strategy)
def _lc_cost(run: Run) -> list:
    from simulator.lessons.long_context import CostFrame

    return [f for f in run.frames if isinstance(f, CostFrame)]


def _lc_time_ratio(run: Run) -> float:
    last = _lc_cost(run)[-1]
    return last.point("local").seconds / last.point("tiled").seconds


def _lc_naive_longest(run: Run) -> float:
    ran = [f.seq_len for f in _lc_cost(run) if f.point("naive").seconds is not None]
    return float(max(ran)) if ran else 0.0


def _lc_bytes_mismatch(run: Run) -> float:
    return float(max((abs(p.bytes - p.allocated) for f in _lc_cost(run) for p in f.points if p.seconds is not None),
                     default=math.nan))


def _lc_copy_loss(run: Run) -> dict[str, float]:
    from simulator.lessons.long_context import CopyFrame

    return {f.strategy: float(f.final) for f in run.frames if isinstance(f, CopyFrame)}


def _lc_strategies(_cfg) -> list[str]:
    from simulator.lessons.long_context import STRATEGIES

    return list(STRATEGIES)


metric("local_time_ratio", "long context: at the sweep's longest T, local attention's forward + backward time over "
       "exact tiled attention's", {"long_context": Impl(_lc_time_ratio)}, per_step=False)
metric("naive_longest", "long context: the longest T at which naive attention ran (its T x T matrices fit the "
       "memory budget; 0: none)", {"long_context": Impl(_lc_naive_longest)}, per_step=False, best="max")
metric("bytes_mismatch", "long context: the largest |bytes by formula - bytes of the arrays allocated| of any run "
       "of the sweep", {"long_context": Impl(_lc_bytes_mismatch)}, per_step=False)
metric("copy_loss", "long context: per strategy (exact, local, truncation, sliding), the copy task's loss on the "
       "positions whose token repeats one copy_distance back, after training", {
           "long_context": Impl(_lc_copy_loss, _lc_strategies, True)}, per_step=False, keyed=True,
       key_name="strategy")


# -------------------------------------------------------------------------------------------- reading
def _fold(values: dict, claim, key) -> float:
    if key is not None:
        if key not in values:
            raise LookupError(_("'{key}' is not measured in this run (it has: {keys})").format(
                key=key, keys=", ".join(map(str, values))))
        return values[key]
    vals = list(values.values())
    how = claim.reduce or "mean"
    return float({"mean": np.mean, "min": np.min, "max": np.max, "product": np.prod}[how](vals))


def read(claim, run: Run, key) -> tuple[Any, str]:
    """The value of the claim's metric in `run` (key: which layer/learner) and where it was read, in words."""
    m = METRICS[claim.metric]
    impl = m.impls[run.kind]
    fold = m.keyed and key is None
    what = (f"{claim.metric}[{key}]" if key is not None else
            _("{metric} ({how} over every {key_name})").format(metric=claim.metric, how=claim.reduce or "mean",
                                                              key_name=m.key_name) if fold else claim.metric)
    if not m.per_step:
        v = impl.read(run)
        return (_fold(v, claim, key) if m.keyed else v), what
    series = [(s, v) for s, v in impl.read(run) if v is not None]
    if not series:
        raise LookupError(_("'{metric}' was not recorded in this run").format(metric=claim.metric))
    if m.keyed:
        series = [(s, _fold(v, claim, key)) for s, v in series]
    steps = [s for s, _ in series]
    if claim.step is not None:
        if claim.step not in steps:
            shown = ", ".join(map(str, steps[:8])) + (", ..." if len(steps) > 8 else "")
            raise LookupError(_("'{metric}' has no value at step {step} (it has steps {steps})").format(
                metric=claim.metric, step=claim.step, steps=shown))
        end = steps.index(claim.step)
    elif claim.at == "first":
        end = 0
    elif claim.at == "best":
        values = [v for _, v in series]
        end = int(np.nanargmax(values) if m.best == "max" else np.nanargmin(values))
        where = (_("{what}, best (highest) at step {step}") if m.best == "max" else
                 _("{what}, best (lowest) at step {step}"))
        return series[end][1], where.format(what=what, step=series[end][0])
    else:
        end = len(series) - 1
    if claim.average > 1:
        if end + 1 < claim.average:
            raise LookupError(_("an average of {n} values needs {n} records of '{metric}', this run has {have} up "
                              "to there").format(n=claim.average, metric=claim.metric, have=end + 1))
        window = series[end + 1 - claim.average:end + 1]
        return float(np.mean([v for _s, v in window])), _("{what}, mean of steps {first}-{last}").format(
            what=what, first=window[0][0], last=window[-1][0])
    return series[end][1], _("{what} at step {step}").format(what=what, step=series[end][0])


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else str(v)


def compare(comparison: str, x, threshold, target=None, value=None) -> bool:
    """Whether measured x satisfies the comparison (NaN satisfies none)."""
    if comparison == "is":
        return x == value
    if not isinstance(x, (int, float)) or math.isnan(x):
        return False
    if comparison == "within":
        return abs(x - (target or 0.0)) <= threshold
    return {"<": x < threshold, "<=": x <= threshold, ">": x > threshold, ">=": x >= threshold}[comparison]


def measure(claim, this: Run, other: Run | None):
    """A claim's Verdict: its metric read in this run (and the other run or key), compared with its threshold."""
    from simulator.lessons.cards import Verdict

    a, where = read(claim, this, claim.of)
    measured = f"{where}: {_num(a)} ({this.label})"
    x = a
    if other is not None or claim.other_of is not None:
        side = other if other is not None else this
        b, where_b = read(claim, side, claim.other_of or claim.of)
        if claim.comparison == "is":
            raise LookupError(_("'is' compares one run's name with a value, not two runs"))
        x = a - b
        measured = (_("{measured} vs {value} ({label}); difference {difference}") if where_b == where else
                    _("{measured}; {where}: {value} ({label}); difference {difference}")).format(
            measured=measured, where=where_b, value=_num(b), label=side.label, difference=_num(x))

    if claim.comparison == "is":
        test = f"{x!r} is {claim.value!r}"
    elif claim.comparison == "within":
        test = (f"|{_num(x)} - {claim.target:g}| <= {claim.threshold:g}" if claim.target is not None
                else f"|{_num(x)}| <= {claim.threshold:g}")
    else:
        test = f"{_num(x)} {claim.comparison} {claim.threshold:g}"
    return Verdict(claim, compare(claim.comparison, x, claim.threshold, claim.target, claim.value), measured, test, x)
