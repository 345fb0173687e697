"""Frozen configuration dataclasses; a YAML preset mirrors their nesting exactly.

Each field is declared once, here, with `setting(default, rule, live=..., help=..., label=...)`
(`simulator/rules.py`): its default, the rule a preset value must pass, whether it is *live* (takes
effect on the next step) or *structural* (a change rebuilds the model and its buffers), a one-line
help and the short label of its control. The YAML walk, `LIVE_FIELDS`, the UI's controls and
their tooltips all read these declarations. The UI never mutates a config: it builds a new one with
`dataclasses.replace` and hands it over.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Optional

from simulator.i18n import N_, _
from simulator.rules import (
    Setting,
    did_you_mean,
    in_range,
    non_empty,
    non_negative,
    one_of,
    positive,
    positive_int,
    setting,
    settings_of,
    unit_open,
)

NORMS = ("layernorm", "rmsnorm", "batchnorm", "none")
NORM_POSITIONS = ("pre", "post")
ACTIVATIONS = ("gelu", "relu", "silu", "sigmoid", "tanh")
INITS = ("normal", "xavier", "xavier_normal", "he", "gpt2", "zeros", "constant")
DROPOUT_MODES = ("inverted", "classic")
ATTENTION_IMPLS = ("naive", "tiled")
ATTENTION_MASKS = ("causal", "none", "local")
ATTENTION_SCALES = ("sqrt_dk", "none")
POSITIONALS = ("learned", "sinusoidal", "none", "rope")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adam_l2", "ftrl")
SCHEDULES = ("constant", "linear_warmup", "cosine", "warmup_cosine", "step", "linear_decay")
CLIP_MODES = ("norm", "value")
DATA_KINDS = ("builtin", "text_file", "lines", "world")
TOKENIZERS = ("char", "bpe", "wordpiece")
DTYPES = ("float32", "float64")
BACKENDS = ("cpu", "cuda", "auto")  # where the kernels run (simulator/backend/)
# The linears LoRA can adapt: the fused q/k/v projection, the attention output, the MLP's two layers
LORA_TARGETS = ("qkv", "proj", "fc", "fc2")
LORA_BASES = ("float", "nf4")  # how a LoRA base is held: the model's dtype, or QLoRA's 4-bit NormalFloat


def lora_targets_rule(v) -> str | None:
    """A non-empty list of distinct names from LORA_TARGETS."""
    if not v:
        return _("must name at least one of {choices}").format(choices=", ".join(LORA_TARGETS))
    for t in v:
        if t not in LORA_TARGETS:
            return (_("{value!r} is not one of {choices}").format(value=t, choices=", ".join(LORA_TARGETS))
                    + did_you_mean(str(t), LORA_TARGETS, cutoff=0.45))
    if len(set(v)) != len(v):
        return _("names a target twice: {targets}").format(targets=", ".join(v))

    return None


@dataclass(frozen=True)
class AttentionConfig:
    """How attention is computed; all fields are structural."""

    impl: str = setting("naive", one_of(ATTENTION_IMPLS), label=N_("attention"), help=(
        N_("How attention is computed: naive forms the whole T x T score matrix; tiled (FlashAttention) walks it "
        "tile by tile and never stores it. Same numbers, other memory traffic: see the Tiled attention tab.")))
    mask: str = setting("causal", one_of(ATTENTION_MASKS), label=N_("mask"), help=(
        N_("causal: a position sees only earlier ones (a decoder). none: it also sees the future, so predicting "
        "the next character is trivial and the model learns nothing it can generate with. local: causal, but only "
        "the last attention.window keys (and the first attention.global_tokens positions): the long-context tab.")))
    scale: str = setting("sqrt_dk", one_of(ATTENTION_SCALES), label=N_("score scale"), help=(
        N_("sqrt_dk: scores q.k / sqrt(head size). none: unscaled scores grow with the width and saturate the "
        "softmax.")))
    n_kv_head: Optional[int] = setting(None, positive_int, help=(
        N_("Key/value heads: null = n_head (MHA), 1 (MQA), or a divisor of n_head (GQA).")))
    window: int = setting(0, non_negative, label=N_("window"), help=(
        N_("mask local: each position attends to itself and the window - 1 positions before it (0: no window).")))
    global_tokens: int = setting(0, non_negative, label=N_("global tokens"), help=(
        N_("mask local: the first N positions are global, as in Longformer: they attend to every earlier position "
        "and every later position attends to them.")))
    tile_q: int = setting(0, non_negative, help=N_("tiled: query rows per tile (0: the kernel's tuned default)."))
    tile_k: int = setting(0, non_negative, help=N_("tiled: keys per tile (0: the kernel's tuned default)."))

    @property
    def causal(self) -> bool:
        """No position sees a later one (causal and local)."""
        return self.mask != "none"

    def window_args(self) -> dict:
        """The attention kernels' window keywords: {} unless the mask is local (so the defaults stay untouched)."""
        return {"window": self.window, "n_global": self.global_tokens} if self.mask == "local" else {}


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (Hu et al. 2021) on chosen linears; structural. rank 0 (the default): no LoRA.

    Each targeted linear y = x W + b gains A (rank x d_in) and B (d_out x rank):
    y = x W + b + (alpha / rank) * (x A^T) B^T. With LoRA on, every base weight is frozen.
    """

    rank: int = setting(0, positive_int, label=N_("LoRA rank"), help=(
        N_("Rank r of each adapter (1 .. min(d_in, d_out)); leave model.lora out for a model without adapters. With "
        "LoRA on, the base weights are frozen and only the adapters train.")))
    alpha: float = setting(16.0, positive, label=N_("LoRA alpha"), help=(
        N_("The adapter's output is scaled by alpha / rank, so a new rank needs no new learning rate.")))
    targets: tuple[str, ...] = setting(("qkv", "proj", "fc", "fc2"), lora_targets_rule, help=(
        N_("Which linears get adapters: qkv (attention's fused q/k/v), proj (attention output), fc and fc2 (the "
        "MLP's first and second layer).")))
    dropout: float = setting(0.0, unit_open, help=(
        N_("Dropout on each adapter's input while training (the base path sees the input undropped).")))
    base: str = setting("float", one_of(LORA_BASES), label=N_("LoRA base"), help=(
        N_("How the frozen base of every targeted linear is held: float (the model's dtype) or nf4 (QLoRA: packed "
        "4-bit NormalFloat codes and one absmax scale per block, dequantized tile by tile inside the linear).")))
    block: int = setting(64, positive_int, label=N_("NF4 block"), help=(
        N_("Weights per absmax scale under base nf4 (QLoRA's 64); even, and a divisor of every targeted weight's "
           "size.")))

    double_quant: bool = setting(False, label=N_("double quantization"), help=(
        N_("Under base nf4, store the block scales again in 8 bits (blocks of 256 scales): 4.127 bits per weight "
        "instead of 4.5.")))

    @property
    def on(self) -> bool:
        return self.rank > 0

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def quantized(self) -> bool:
        """QLoRA: the targeted linears' frozen weights are held as NF4 codes only."""
        return self.on and self.base == "nf4"


@dataclass(frozen=True)
class ModelConfig:
    """Shape and wiring of the GPT; all fields structural except `dropout` and `dropout_mode`."""

    vocab_size: Optional[int] = setting(None, positive_int, help=(
        N_("Tokens the model knows; null takes it from the tokenizer of the data.")))
    d_model: int = setting(64, positive_int, label=N_("width"), help=(
        N_("Channels of the residual stream (d_model); must be divisible by the number of heads.")))
    n_layer: int = setting(2, positive_int, label=N_("layers"), help=N_("Number of transformer blocks."))
    n_head: int = setting(4, positive_int, label=N_("heads"), help=(
        N_("Attention heads per block; each head sees d_model / heads channels.")))
    seq_len: int = setting(64, positive_int, label=N_("sequence length"), help=(
        N_("Tokens per sequence, characters with data.tokenizer char (the context the model can attend over).")))
    mlp_ratio: int = setting(4, positive_int, help=N_("Width of each MLP's hidden layer, in multiples of d_model."))
    norm: str = setting("layernorm", one_of(NORMS), label=N_("norm"), help=(
        N_("Which normalisation each block uses: layernorm centres and scales each position, rmsnorm only scales "
        "it, none leaves the residual stream unchecked.")))
    norm_position: str = setting("pre", one_of(NORM_POSITIONS), label=N_("norm position"), help=(
        N_("pre: x + f(norm(x)), a clean residual path from the loss to the embeddings. post: norm(x + f(x)), as in "
        "the original transformer.")))
    residual: bool = setting(True, label=N_("residual"), help=(
        N_("Adds each sublayer's output to its input (x + f(x)). Off, every gradient has to pass through every "
        "layer: watch it vanish in the heatmap.")))
    activation: str = setting("gelu", one_of(ACTIVATIONS), label=N_("activation"), help=(
        N_("The MLP's non-linearity: gelu and silu are smooth, relu is zero for negative inputs (dead units show "
        "as zero gradients), sigmoid and tanh saturate (their gradients vanish: see the Activations tab).")))
    dropout: float = setting(0.0, unit_open, live=True, label=N_("dropout"), help=(
        N_("Fraction of activations zeroed at random while training (eval and generation are unaffected).")))
    tie_embeddings: bool = setting(True, help=N_("The output head reuses the token embedding matrix (wte)."))
    positional: str = setting("learned", one_of(POSITIONALS), label=N_("positions"), help=(
        N_("How the model knows where a token is: learned or sinusoidal vectors added to the embedding, rope "
        "rotates queries and keys, none gives it no position at all.")))
    init: str = setting("normal", one_of(INITS), label=N_("init"), help=(
        N_("How weight matrices start: normal(0, init_std); xavier (variance 2/(fan_in+fan_out), uniform or "
        "normal); he (variance 2/fan_in); gpt2 (normal, residual projections scaled down by depth); zeros or "
        "constant (every unit alike: symmetry is never broken).")))
    init_std: float = setting(0.02, positive, help=(
        N_("Used by init: normal and gpt2 (gpt2: divided by sqrt(2 n_layer) on residual projections).")))
    init_constant: float = setting(0.01, help=N_("Used by init: constant (every matrix entry; the symmetry lesson)."))
    dropout_mode: str = setting("inverted", one_of(DROPOUT_MODES), live=True, label=N_("dropout mode"), help=(
        N_("inverted: scale kept activations by 1/(1-p) while training; classic: scale by (1-p) at evaluation "
        "instead.")))
    batchnorm_momentum: float = setting(0.1, in_range(0, 1), help=(
        N_("running = (1 - momentum) * running + momentum * batch (PyTorch's convention).")))
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    init_from: Optional[str] = setting(None, non_empty, help=(
        N_("A run folder (or checkpoint.npz) whose weights the model starts from instead of a fresh init: the base "
        "of a fine-tuning run. Its architecture must match; relative paths resolve against the preset's folder.")))

    @property
    def head_size(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads: attention.n_kv_head, or n_head when it is not set."""
        return self.attention.n_kv_head or self.n_head

    @property
    def d_hidden(self) -> int:
        return self.mlp_ratio * self.d_model


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer, learning-rate schedule and clipping; all live (simulator/optim documents each update exactly).

    A new `name` keeps the weights and starts the optimizer state afresh.
    """

    name: str = setting("adamw", one_of(OPTIMIZERS), live=True, label=N_("optimizer"), help=(
        N_("The update rule. Changing it starts a new run (its state, e.g. Adam's moments, has another shape).")))
    lr: float = setting(1e-3, positive, live=True, label=N_("learning rate"), help=(
        N_("Peak step size; the schedule scales it.")))
    weight_decay: float = setting(0.0, non_negative, live=True, label=N_("weight decay"), help=(
        N_("Pulls matrices towards zero each step (decoupled for adamw, added to the gradient for the others).")))
    beta1: float = setting(0.9, unit_open, live=True, label=N_("beta1"), help=(
        N_("Adam: how much of the gradient's running mean is kept each step (momentum).")))
    beta2: float = setting(0.999, unit_open, live=True, label=N_("beta2"), help=(
        N_("Adam/RMS: how much of the squared gradient's running mean is kept each step.")))
    eps: float = setting(1e-8, positive, live=True, help=N_("Added to the root of the second moment before dividing."))
    momentum: float = setting(0.0, non_negative, live=True, label=N_("momentum"), help=(
        N_("SGD with momentum / Nesterov / RMSProp: fraction of the previous update carried on.")))
    schedule: str = setting("warmup_cosine", one_of(SCHEDULES), live=True, label=N_("schedule"), help=(
        N_("How the learning rate moves with the step (the lr curve on the Overview tab).")))
    warmup_steps: int = setting(0, non_negative, live=True, label=N_("warmup"), help=(
        N_("Steps over which the learning rate ramps up from 0; post-norm needs it more than pre-norm.")))
    # the horizon of the decay is this field, never the run's length: the schedule is a function of the step only
    decay_steps: int = setting(2000, positive_int, live=True, label=N_("decay steps"), help=(
        N_("Step at which cosine / linear decay reaches min lr.")))
    min_lr: float = setting(0.0, non_negative, live=True, label=N_("min lr"), help=(
        N_("The learning rate at the end of the decay.")))
    grad_clip: float = setting(0.0, non_negative, live=True, label=N_("clip"), help=(
        N_("Largest global gradient norm; larger gradients are scaled down to it (0 turns clipping off). Spikes "
        "show in the grad-norm plot.")))
    clip_mode: str = setting("norm", one_of(CLIP_MODES), live=True, help=(
        N_("norm: rescale by the global norm; value: clamp each entry to [-grad_clip, grad_clip].")))
    dampening: float = setting(0.0, in_range(0, 1), live=True, help=(
        N_("sgd/momentum: buf = momentum*buf + (1 - dampening)*g (nesterov needs 0).")))
    bias_correction: bool = setting(True, live=True, help=(
        N_("adam, adamw, adam_l2: divide the moments by (1 - beta^t).")))
    rho: float = setting(0.99, in_range(0, 1), live=True, help=(
        N_("rmsprop: smoothing of the squared-gradient average (torch calls it alpha).")))
    l1: float = setting(0.0, non_negative, live=True, help=(
        N_("ftrl: L1 strength (weights with |z| <= l1 are exactly zero).")))
    l2: float = setting(0.0, non_negative, live=True, help=N_("ftrl: L2 strength."))
    ftrl_beta: float = setting(1.0, non_negative, live=True, help=(
        N_("ftrl: per-coordinate rate is lr / (ftrl_beta + sqrt(n)); lr plays the paper's alpha.")))
    decay_embeddings: bool = setting(False, live=True, help=(
        N_("Weight decay (and ftrl's l1/l2) also touches the embeddings; matrices always decay.")))
    decay_norms_and_biases: bool = setting(False, live=True, help=(
        N_("Weight decay (and ftrl's l1/l2) also touches norm gains and biases; matrices always decay.")))
    step_size: int = setting(1000, positive_int, live=True, help=(
        N_("schedule step: multiply lr by gamma every step_size steps.")))
    gamma: float = setting(0.1, non_negative, live=True, help=N_("schedule step: the factor applied every step_size."))


@dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it is split; structural."""

    kind: str = setting("builtin", one_of(DATA_KINDS), help=(
        N_("builtin: the generated corpus; text_file: data.path; lines: one example per line, padded with <pad> "
        "(data.path, or the built-in corpus); world: documents of an invented world, with topics and word "
        "relations (role x gender, singular x plural, country x capital).")))
    path: Optional[str] = setting(None, non_empty, help=(
        N_("For kind: text_file or lines (relative paths resolve against the preset's folder).")))
    val_fraction: float = setting(0.1, in_range(0, 0.5, low_open=True), help=(
        N_("The share of the text, at its end, held out for the validation loss.")))
    tokenizer: str = setting("char", one_of(TOKENIZERS), label=N_("tokenizer"), help=(
        N_("char: one token per character. bpe: byte-level byte-pair encoding (GPT-2). wordpiece: BERT's pieces "
        "with ## continuations. bpe and wordpiece are learned on the training split, up to data.vocab_size.")))
    vocab_size: int = setting(512, positive_int, label=N_("tokenizer vocab"), help=(
        N_("bpe, wordpiece: the most tokens the tokenizer learns (bpe starts from 256 bytes; wordpiece from "
        "4 specials, 256 bytes and the text's characters).")))


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stops the run when the validation loss stops improving (simulator/early_stopping.py); all live."""

    patience: int = setting(0, non_negative, live=True, label=N_("patience"), help=(
        N_("Early stopping: evaluations (every train.eval_every steps) without an improvement before the run stops "
        "(0: off).")))
    min_delta: float = setting(0.0, non_negative, live=True, label=N_("min delta"), help=(
        N_("Early stopping: how much lower than the best so far a validation loss must be to count as an "
        "improvement.")))
    restore_best: bool = setting(True, live=True, label=N_("restore best"), help=(
        N_("Early stopping: when the run stops, put back the weights of the best evaluation (the checkpoint keeps "
        "them).")))


@dataclass(frozen=True)
class TrainConfig:
    """The loop: how long, how big a batch, which seed, how often to look."""

    steps: int = setting(300, positive_int, live=True, help=N_("Steps a run trains for."))
    batch_size: int = setting(16, positive_int, label=N_("batch size"), help=N_("Sequences per step."))
    seed: int = setting(1337, non_negative, label=N_("seed"), help=(
        N_("Seeds weights, batches and dropout: the same seed gives the same run, so two runs that differ in one "
        "toggle can be compared.")))
    eval_every: int = setting(50, non_negative, live=True, help=N_("Validation loss every k steps (0: never)."))
    eval_batches: int = setting(4, positive_int, live=True, help=N_("Fixed batches the validation loss averages."))
    stats_every: int = setting(10, non_negative, live=True, help=(
        N_("Heavy per-tensor statistics every k steps (0: never).")))
    watch_layer: int = setting(0, non_negative, live=True, help=N_("Which layer's attention map goes into the record."))
    watch_head: int = setting(0, non_negative, live=True, help=N_("Which head's attention map goes into the record."))
    checkpoint_every: int = setting(100, non_negative, live=True, help=(
        N_("CLI: write checkpoint.npz every k steps (0: only at the end).")))
    dtype: str = setting("float32", one_of(DTYPES), help=N_("The floating-point type of weights and activations."))
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    backend: str = setting("cpu", one_of(BACKENDS), label=N_("backend"), help=(
        N_("Where the kernels run: cpu, cuda (a GPU; the CUDA simulator counts only with NUMBA_ENABLE_CUDASIM=1 set) "
        "or auto (the GPU when one is usable, otherwise the CPU). Changing it rebuilds the session; the weights "
        "and checkpoints are the same on both.")))


@dataclass(frozen=True)
class SamplingConfig:
    """How text is generated from the model; live."""

    prompt: str = setting("\n", non_empty, live=True, label=N_("prompt"), help=(
        N_("The text generation starts from (\\n is a newline). With data.tokenizer char, every character must occur "
        "in the training text.")))
    max_new: int = setting(200, positive_int, live=True, label=N_("new tokens"), help=(
        N_("How many tokens to generate (characters with data.tokenizer char).")))
    temperature: float = setting(1.0, positive, live=True, label=N_("temperature"), help=(
        N_("Divides the logits: below 1 sharpens the distribution, above 1 flattens it.")))
    top_k: int = setting(0, non_negative, live=True, label=N_("top-k"), help=(
        N_("Keep only the k most likely tokens (0: off).")))
    top_p: float = setting(1.0, in_range(0, 1, low_open=True), live=True, label=N_("top-p"), help=(
        N_("Keep the smallest set of most likely tokens whose probability adds up to p (1: off).")))
    min_p: float = setting(0.0, unit_open, live=True, label=N_("min-p"), help=(
        N_("Keep tokens at least min_p times as likely as the most likely one (0: off).")))
    greedy: bool = setting(False, live=True, label=N_("greedy"), help=(
        N_("Always take the most likely token (no randomness).")))
    seed: int = setting(0, non_negative, live=True, label=N_("seed"), help=(
        N_("The sampler's own random stream: the same seed, weights and rule give the same text.")))


@dataclass(frozen=True)
class RunConfig:
    """One preset: a name a person reads, a description, and the parts above."""

    name: str = setting("untitled", non_empty, help=N_("The name a person reads (window title, run folder)."))
    description: str = setting("", help=N_("What the preset shows; its first line is the preset list's summary."))
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


SETTINGS: dict[str, Setting] = settings_of(RunConfig)  # every leaf of a RunConfig by dotted path
# Dotted paths whose change applies on the next step without a rebuild.
LIVE_FIELDS = frozenset(path for path, s in SETTINGS.items() if s.live)


def is_live(path: str) -> bool:
    """True when a change of this dotted path of a RunConfig applies on the next step without a rebuild."""
    return path in LIVE_FIELDS


def changed_paths(old, new, prefix: str = "") -> list[str]:
    """Dotted paths of the fields that differ between two configs of one type."""
    out = []
    for f in fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        path = prefix + f.name
        if is_dataclass(a):
            out += changed_paths(a, b, path + ".")
        elif a != b:
            out.append(path)
    return out


def is_structural_change(old: RunConfig, new: RunConfig) -> bool:
    """True when going from `old` to `new` needs a rebuilt model."""
    return any(not is_live(p) for p in changed_paths(old, new))
