"""Frozen configuration dataclasses; a YAML preset mirrors their nesting exactly.

Every field is either *structural* (changing it rebuilds the model and its
buffers) or *live* (it takes effect on the next step). `LIVE_FIELDS` lists the
live ones by dotted path; everything else is structural. The UI never mutates
a config: it builds a new one with `dataclasses.replace` and hands it over.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Optional

NORMS = ("layernorm", "rmsnorm", "batchnorm", "none")
NORM_POSITIONS = ("pre", "post")
ACTIVATIONS = ("gelu", "relu", "silu", "sigmoid", "tanh")
INITS = ("normal", "xavier", "xavier_normal", "he", "gpt2", "zeros", "constant")
DROPOUT_MODES = ("inverted", "classic")
ATTENTION_IMPLS = ("naive", "tiled")
ATTENTION_MASKS = ("causal", "none")
ATTENTION_SCALES = ("sqrt_dk", "none")
POSITIONALS = ("learned", "sinusoidal", "none", "rope")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "adam_l2", "ftrl")
SCHEDULES = ("constant", "linear_warmup", "cosine", "warmup_cosine", "step", "linear_decay")
DATA_KINDS = ("builtin", "text_file", "lines")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class AttentionConfig:
    """How attention is computed; all fields are structural."""

    impl: str = "naive"  # naive: the plain reference kernel (forms the T x T matrix); tiled: FlashAttention-style
    mask: str = "causal"  # causal: a decoder (no key after its query); none: bidirectional, every key visible
    scale: str = "sqrt_dk"  # scores q.k times 1/sqrt(head_size), or none (times 1)
    n_kv_head: Optional[int] = None  # key/value heads: None = n_head (MHA), 1 (MQA), or a divisor of n_head (GQA)
    tile_q: int = 0  # tiled: query rows per tile (0: the kernel's tuned default)
    tile_k: int = 0  # tiled: keys per tile (0: the kernel's tuned default)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and wiring of the GPT; all fields structural except `dropout`."""

    vocab_size: Optional[int] = None  # None: taken from the tokenizer of the data
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    seq_len: int = 64
    mlp_ratio: int = 4
    norm: str = "layernorm"
    norm_position: str = "pre"
    residual: bool = True
    activation: str = "gelu"
    dropout: float = 0.0
    tie_embeddings: bool = True
    positional: str = "learned"
    init: str = "normal"
    init_std: float = 0.02  # used by init: normal and gpt2 (gpt2: divided by sqrt(2 n_layer) on residual projections)
    init_constant: float = 0.01  # used by init: constant (every matrix entry; the symmetry lesson)
    # inverted: x / (1-p) in training, identity in eval; classic: x in training, x (1-p) in eval
    dropout_mode: str = "inverted"
    batchnorm_momentum: float = 0.1  # running = (1 - momentum) * running + momentum * batch (PyTorch's convention)
    attention: AttentionConfig = field(default_factory=AttentionConfig)

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
    """Optimizer, learning-rate schedule and clipping; hyper-parameters are live."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0  # sgd, momentum, nesterov, rmsprop (0: none)
    schedule: str = "warmup_cosine"
    warmup_steps: int = 0
    decay_steps: int = 2000  # cosine reaches min_lr here; the schedule is a function of the step only
    min_lr: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 turns clipping off
    # Fields below extend the optimizer lab; simulator/optim documents each update exactly.
    clip_mode: str = "norm"  # norm: rescale by the global norm; value: clamp each entry to [-grad_clip, grad_clip]
    dampening: float = 0.0  # sgd/momentum: buf = momentum*buf + (1 - dampening)*g (nesterov needs 0)
    bias_correction: bool = True  # adam, adamw, adam_l2: divide the moments by (1 - beta^t)
    rho: float = 0.99  # rmsprop: smoothing of the squared-gradient average (torch calls it alpha)
    l1: float = 0.0  # ftrl: L1 strength (weights with |z| <= l1 are exactly zero)
    l2: float = 0.0  # ftrl: L2 strength
    ftrl_beta: float = 1.0  # ftrl: per-coordinate rate is lr / (ftrl_beta + sqrt(n)); lr plays the paper's alpha
    decay_embeddings: bool = False  # parameter groups: which tensors weight decay (and ftrl's l1/l2) touch;
    decay_norms_and_biases: bool = False  # matrices always decay
    step_size: int = 1000  # schedule step: multiply lr by gamma every step_size steps
    gamma: float = 0.1


@dataclass(frozen=True)
class DataConfig:
    """Where the text comes from and how it is split; structural."""

    kind: str = "builtin"  # lines: one example per line, padded with <pad> (data.path, or the built-in corpus)
    path: Optional[str] = None  # for kind: text_file or lines (relative paths resolve against the preset's folder)
    val_fraction: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """The loop: how long, how big a batch, which seed, how often to look."""

    steps: int = 300
    batch_size: int = 16
    seed: int = 1337
    eval_every: int = 50  # validation loss every k steps (0: never)
    eval_batches: int = 4
    stats_every: int = 10  # heavy per-tensor statistics every k steps (0: never)
    watch_layer: int = 0  # which layer's attention map goes into the record
    watch_head: int = 0
    checkpoint_every: int = 100  # CLI: write checkpoint.npz every k steps (0: only at the end)
    dtype: str = "float32"


@dataclass(frozen=True)
class SamplingConfig:
    """How text is generated from the model; live."""

    prompt: str = "\n"
    max_new: int = 200
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    min_p: float = 0.0  # 0.0: off; keeps tokens with prob >= min_p * (largest prob)
    greedy: bool = False
    seed: int = 0


@dataclass(frozen=True)
class RunConfig:
    """One preset: a name a person reads, a description, and the parts above."""

    name: str = "untitled"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


# Dotted paths whose change applies on the next step without a rebuild. A new `optim.name`
# keeps the weights and starts the optimizer state afresh.
LIVE_FIELDS = frozenset(
    ["model.dropout", "model.dropout_mode", "train.eval_every", "train.stats_every", "train.watch_layer",
     "train.watch_head", "train.checkpoint_every", "train.steps", "train.eval_batches"]
    + [f"optim.{f.name}" for f in fields(OptimConfig)]
    + [f"sampling.{f.name}" for f in fields(SamplingConfig)]
)


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
    return any(p not in LIVE_FIELDS for p in changed_paths(old, new))
