"""The controls: one widget per config field, grouped, each with a tooltip naming what it does and its lesson.

A control never edits a config. It reports `(dotted path, typed text)` to `on_change`; the window builds
a new config through `presets.override` (the preset rules check the value), asks before a structural
change discards a run, and hands the result to the session. `set_config` shows a config without
reporting anything, which is also how a refused value is put back.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from tkinter import ttk

from simulator import config as C
from simulator.config import LIVE_FIELDS
from ui.tooltip import Tooltip

REBUILD_MARK = "⟳"


@dataclass(frozen=True)
class ControlSpec:
    """One control: the config field it edits, how it is typed, and what the tooltip says."""

    path: str
    label: str
    kind: str  # "choice" | "bool" | "int" | "float" | "text"
    help: str
    lesson: str
    choices: tuple = ()
    spin: tuple[int, int, int] | None = None  # ints: from, to, increment of the arrows

    @property
    def live(self) -> bool:
        """True when the change applies on the next step without a rebuild."""
        return self.path in LIVE_FIELDS


GROUPS: list[tuple[str, list[ControlSpec]]] = [
    ("Model", [
        ControlSpec("model.norm", "norm", "choice", "Which normalisation each block uses: layernorm centres and "
                    "scales each position, rmsnorm only scales it, none leaves the residual stream unchecked.",
                    "rmsnorm, no-norm-deep", C.NORMS),
        ControlSpec("model.norm_position", "norm position", "choice", "pre: x + f(norm(x)), a clean residual path "
                    "from the loss to the embeddings. post: norm(x + f(x)), as in the original transformer.",
                    "postnorm", C.NORM_POSITIONS),
        ControlSpec("model.residual", "residual", "bool", "Adds each sublayer's output to its input (x + f(x)). "
                    "Off, every gradient has to pass through every layer: watch it vanish in the heatmap.",
                    "no-norm-deep"),
        ControlSpec("model.activation", "activation", "choice", "The MLP's non-linearity: gelu and silu are smooth, "
                    "relu is zero for negative inputs (dead units show as zero gradients), sigmoid and tanh saturate "
                    "(their gradients vanish: see the Activations tab).", "tiny-gpt", C.ACTIVATIONS),
        ControlSpec("model.dropout", "dropout", "float", "Fraction of activations zeroed at random while training "
                    "(eval and generation are unaffected). Applies on the next step.", "overfit-dropout"),
        ControlSpec("model.dropout_mode", "dropout mode", "choice", "inverted: scale kept activations by 1/(1-p) "
                    "while training; classic: scale by (1-p) at evaluation instead.", "overfit-dropout",
                    C.DROPOUT_MODES),
        ControlSpec("model.init", "init", "choice", "How weight matrices start: normal(0, init_std); xavier "
                    "(variance 2/(fan_in+fan_out), uniform or normal); he (variance 2/fan_in); gpt2 (normal, residual "
                    "projections scaled down by depth); zeros or constant (every unit alike: symmetry is never "
                    "broken).", "symmetric-init", C.INITS),
        ControlSpec("model.n_layer", "layers", "int", "Number of transformer blocks.", "no-norm-deep",
                    spin=(1, 16, 1)),
        ControlSpec("model.d_model", "width", "int", "Channels of the residual stream (d_model); must be divisible "
                    "by the number of heads.", "tiny-gpt", spin=(8, 512, 8)),
        ControlSpec("model.n_head", "heads", "int", "Attention heads per block; each head sees d_model / heads "
                    "channels.", "tiny-gpt", spin=(1, 16, 1)),
        ControlSpec("model.attention.impl", "attention", "choice", "How attention is computed: naive forms the "
                    "whole T x T score matrix; tiled (FlashAttention) walks it tile by tile and never stores it. "
                    "Same numbers, other memory traffic: see the Tiled attention tab.", "tiny-gpt",
                    C.ATTENTION_IMPLS),
        ControlSpec("model.attention.mask", "mask", "choice", "causal: a position sees only earlier ones (a "
                    "decoder). none: it also sees the future, so predicting the next character is trivial and "
                    "the model learns nothing it can generate with.", "mask-leak", C.ATTENTION_MASKS),
        ControlSpec("model.attention.scale", "score scale", "choice", "sqrt_dk: scores q.k / sqrt(head size). "
                    "none: unscaled scores grow with the width and saturate the softmax.", "unscaled-attention",
                    C.ATTENTION_SCALES),
        ControlSpec("model.positional", "positions", "choice", "How the model knows where a token is: learned or "
                    "sinusoidal vectors added to the embedding, rope rotates queries and keys, none gives it no "
                    "position at all.", "tiny-gpt", C.POSITIONALS),
    ]),
    ("Optimizer", [
        ControlSpec("optim.name", "optimizer", "choice", "The update rule. Changing it starts a new run (its "
                    "state, e.g. Adam's moments, has another shape).", "optimizer-race", C.OPTIMIZERS),
        ControlSpec("optim.lr", "learning rate", "float", "Peak step size; the schedule scales it. Applies on the "
                    "next step.", "no-norm-deep"),
        ControlSpec("optim.weight_decay", "weight decay", "float", "Pulls matrices towards zero each step (decoupled "
                    "for adamw, added to the gradient for the others).", "tiny-gpt"),
        ControlSpec("optim.beta1", "beta1", "float", "Adam: how much of the gradient's running mean is kept each "
                    "step (momentum).", "optimizer-race"),
        ControlSpec("optim.beta2", "beta2", "float", "Adam/RMS: how much of the squared gradient's running mean is "
                    "kept each step.", "optimizer-race"),
        ControlSpec("optim.momentum", "momentum", "float", "SGD with momentum / Nesterov / RMSProp: fraction of the "
                    "previous update carried on.", "optimizer-race"),
        ControlSpec("optim.schedule", "schedule", "choice", "How the learning rate moves with the step (the lr "
                    "curve on the Overview tab).", "postnorm", C.SCHEDULES),
        ControlSpec("optim.warmup_steps", "warmup", "int", "Steps over which the learning rate ramps up from 0; "
                    "post-norm needs it more than pre-norm.", "postnorm", spin=(0, 100000, 10)),
        ControlSpec("optim.decay_steps", "decay steps", "int", "Step at which cosine / linear decay reaches "
                    "min lr.", "tiny-gpt", spin=(1, 1000000, 100)),
        ControlSpec("optim.min_lr", "min lr", "float", "The learning rate at the end of the decay.", "tiny-gpt"),
        ControlSpec("optim.grad_clip", "clip", "float", "Largest global gradient norm; larger gradients are scaled "
                    "down to it (0 turns clipping off). Spikes show in the grad-norm plot.", "no-norm-deep"),
    ]),
    ("Data and batch", [
        ControlSpec("train.batch_size", "batch size", "int", "Sequences per step.", "tiny-gpt", spin=(1, 256, 1)),
        ControlSpec("model.seq_len", "sequence length", "int", "Characters per sequence (the context the model "
                    "can attend over).", "tiny-gpt", spin=(8, 512, 8)),
        ControlSpec("train.seed", "seed", "int", "Seeds weights, batches and dropout: the same seed gives the same "
                    "run, so two runs that differ in one toggle can be compared.", "postnorm",
                    spin=(0, 2**31 - 1, 1)),
    ]),
]

SAMPLING_GROUP: list[tuple[str, list[ControlSpec]]] = [
    ("Decoding rule", [
        ControlSpec("sampling.prompt", "prompt", "text", "The text generation starts from (\\n is a newline). "
                    "Every character must occur in the training text.", "tiny-gpt"),
        ControlSpec("sampling.temperature", "temperature", "float", "Divides the logits: below 1 sharpens the "
                    "distribution, above 1 flattens it.", "tiny-gpt"),
        ControlSpec("sampling.top_k", "top-k", "int", "Keep only the k most likely tokens (0: off).", "tiny-gpt",
                    spin=(0, 1000, 1)),
        ControlSpec("sampling.top_p", "top-p", "float", "Keep the smallest set of most likely tokens whose "
                    "probability adds up to p (1: off).", "tiny-gpt"),
        ControlSpec("sampling.min_p", "min-p", "float", "Keep tokens at least min_p times as likely as the most "
                    "likely one (0: off).", "tiny-gpt"),
        ControlSpec("sampling.greedy", "greedy", "bool", "Always take the most likely token (no randomness).",
                    "tiny-gpt"),
        ControlSpec("sampling.max_new", "new tokens", "int", "How many characters to generate.", "tiny-gpt",
                    spin=(1, 5000, 10)),
        ControlSpec("sampling.seed", "seed", "int", "The sampler's own random stream: the same seed, weights and "
                    "rule give the same text.", "tiny-gpt", spin=(0, 2**31 - 1, 1)),
    ]),
]

SPECS: dict[str, ControlSpec] = {s.path: s for _, group in GROUPS + SAMPLING_GROUP for s in group}


def escape(text: str) -> str:
    """A string as an entry shows it: newlines and tabs as \\n and \\t, backslashes doubled."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unescape(text: str) -> str:
    """The inverse of `escape`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def get_path(cfg, path: str):
    """The value of a dotted path in a config."""
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def show_value(v) -> str:
    """How a value reads in an entry field."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def tooltip_text(spec: ControlSpec) -> str:
    """The tooltip: what it does, whether it rebuilds, and the lesson."""
    when = "Applies on the next step." if spec.live else f"{REBUILD_MARK} Rebuilds the model (asks before " \
        "discarding a run)."
    text = spec.help if "Applies on the next step" in spec.help else f"{spec.help} {when}"
    return f"{text}\n{spec.path} - lesson: {spec.lesson}"


class ControlsPanel(ttk.Frame):
    """A scrollable column of grouped controls."""

    def __init__(self, parent, on_change: Callable[[str, str], None], groups=GROUPS, note: bool = True,
                 width: int = 236):
        super().__init__(parent)
        self.on_change = on_change
        self.vars: dict[str, tk.Variable] = {}
        self.widgets: dict[str, tk.Widget] = {}
        self.kinds: dict[str, str] = {}
        self._config = None
        canvas = tk.Canvas(self, highlightthickness=0, width=width)
        bar = ttk.Scrollbar(self, orient="vertical", command=canvas.yview)
        inner = ttk.Frame(canvas, padding=(2, 2))
        inner.bind("<Configure>", lambda e: canvas.configure(scrollregion=canvas.bbox("all")))
        window = canvas.create_window((0, 0), window=inner, anchor="nw")
        canvas.bind("<Configure>", lambda e: canvas.itemconfigure(window, width=e.width))
        canvas.configure(yscrollcommand=bar.set)
        canvas.pack(side="left", fill="both", expand=True)
        bar.pack(side="right", fill="y")
        self.canvas, self.inner = canvas, inner
        if note:
            ttk.Label(inner, text=f"{REBUILD_MARK} rebuilds the model; the others apply on the next step",
                      wraplength=width - 10, foreground="#555").pack(fill="x", pady=(0, 4))
        for title, specs in groups:
            box = ttk.LabelFrame(inner, text=title, padding=(3, 2))
            box.pack(fill="x", pady=3)
            box.columnconfigure(1, weight=1)
            for row, spec in enumerate(specs):
                self._add(box, row, spec)
        for w in (canvas, inner):
            w.bind("<Button-4>", lambda e: canvas.yview_scroll(-2, "units"), add="+")
            w.bind("<Button-5>", lambda e: canvas.yview_scroll(2, "units"), add="+")
            w.bind("<MouseWheel>", lambda e: canvas.yview_scroll(-1 if e.delta > 0 else 1, "units"), add="+")

    def _add(self, box, row: int, spec: ControlSpec) -> None:
        mark = "" if spec.live else f" {REBUILD_MARK}"
        label = ttk.Label(box, text=spec.label + mark)
        label.grid(row=row, column=0, sticky="w", padx=(0, 4), pady=1)
        if spec.kind == "bool":
            var = tk.BooleanVar(self)
            w = ttk.Checkbutton(box, variable=var, command=lambda: self._changed(spec.path))
        elif spec.kind == "choice":
            var = tk.StringVar(self)
            w = ttk.Combobox(box, textvariable=var, values=list(spec.choices), state="readonly", width=11)
            w.bind("<<ComboboxSelected>>", lambda e: self._changed(spec.path))
        else:
            var = tk.StringVar(self)
            if spec.spin is not None:
                lo, hi, inc = spec.spin
                w = ttk.Spinbox(box, textvariable=var, from_=lo, to=hi, increment=inc, width=8,
                                command=lambda: self._changed(spec.path))
            else:
                w = ttk.Entry(box, textvariable=var, width=10)
            for seq in ("<Return>", "<KP_Enter>", "<FocusOut>"):
                w.bind(seq, lambda e: self._changed(spec.path), add="+")
        w.grid(row=row, column=1, sticky="ew", pady=1)
        tip = tooltip_text(spec)
        Tooltip(label, tip)
        Tooltip(w, tip)
        self.vars[spec.path] = var
        self.widgets[spec.path] = w
        self.kinds[spec.path] = spec.kind

    def _changed(self, path: str) -> None:
        if self._config is None:
            return
        text = str(self.vars[path].get())
        current = get_path(self._config, path)
        if self.kinds[path] == "text":
            text = unescape(text)
            if text == current:
                return
        elif text == show_value(current):
            return
        self.on_change(path, text)

    def set_config(self, cfg) -> None:
        """Shows `cfg` in every control (reports nothing)."""
        self._config = cfg
        for path, var in self.vars.items():
            value = get_path(cfg, path)
            kind = self.kinds[path]
            var.set(value if kind == "bool" else escape(value) if kind == "text" else show_value(value))

    def set_value(self, path: str, text) -> None:
        """Types a value into a control as a person would, and reports it."""
        self.vars[path].set(text)
        self._changed(path)

