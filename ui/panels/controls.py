"""The controls: one widget per config field, grouped, each with a tooltip naming what it does and its lesson.

A control's label, help, choices and liveness are the field's declaration in `simulator/config.py`;
here are only which controls exist, their grouping, the lesson each points to and the spin ranges.

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
from simulator.i18n import N_, _
from ui import relabel
from ui.tooltip import Tooltip

REBUILD_MARK = "⟳"
KINDS = {bool: "bool", int: "int", float: "float", str: "text"}  # by the type of the field's value


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
        return C.is_live(self.path)


def get_path(cfg, path: str):
    """The value of a dotted path in a config."""
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def control(path: str, lesson: str, spin: tuple[int, int, int] | None = None) -> ControlSpec:
    """The control of a RunConfig field: label, help, choices and liveness come from its declaration in config.py."""
    s = C.SETTINGS[path]
    choices = getattr(s.rule, "choices", ())  # a one_of rule lists its names: a menu
    kind = "choice" if choices else KINDS[type(get_path(C.RunConfig(), path))]
    return ControlSpec(path, s.label or path.rsplit(".", 1)[-1], kind, s.help, lesson, choices, spin)


# Which controls exist, in which group, and the lesson preset each tooltip points to.
GROUPS: list[tuple[str, list[ControlSpec]]] = [
    (N_("Model"), [
        control("model.norm", "rmsnorm, no-norm-deep"),
        control("model.norm_position", "postnorm"),
        control("model.residual", "no-norm-deep"),
        control("model.activation", "tiny-gpt"),
        control("model.dropout", "overfit-dropout"),
        control("model.dropout_mode", "overfit-dropout"),
        control("model.init", "symmetric-init"),
        control("model.n_layer", "no-norm-deep", spin=(1, 16, 1)),
        control("model.d_model", "tiny-gpt", spin=(8, 512, 8)),
        control("model.n_head", "tiny-gpt", spin=(1, 16, 1)),
        control("model.attention.impl", "tiny-gpt"),
        control("model.attention.mask", "mask-leak"),
        control("model.attention.scale", "unscaled-attention"),
        control("model.positional", "tiny-gpt"),
    ]),
    (N_("Optimizer"), [
        control("optim.name", "optimizer-race"),
        control("optim.lr", "no-norm-deep"),
        control("optim.weight_decay", "tiny-gpt"),
        control("optim.beta1", "optimizer-race"),
        control("optim.beta2", "optimizer-race"),
        control("optim.momentum", "optimizer-race"),
        control("optim.schedule", "postnorm"),
        control("optim.warmup_steps", "postnorm", spin=(0, 100000, 10)),
        control("optim.decay_steps", "tiny-gpt", spin=(1, 1000000, 100)),
        control("optim.min_lr", "tiny-gpt"),
        control("optim.grad_clip", "no-norm-deep"),
    ]),
    (N_("Data and batch"), [
        control("train.batch_size", "tiny-gpt", spin=(1, 256, 1)),
        control("model.seq_len", "tiny-gpt", spin=(8, 512, 8)),
        control("train.seed", "postnorm", spin=(0, 2**31 - 1, 1)),
        control("data.tokenizer", "tiny-gpt-bpe, tokenizers"),
        control("data.vocab_size", "tiny-gpt-bpe", spin=(256, 8192, 64)),
    ]),
    (N_("Early stopping"), [
        control("train.early_stopping.patience", "overfit-early-stop", spin=(0, 1000, 1)),
        control("train.early_stopping.min_delta", "overfit-early-stop"),
        control("train.early_stopping.restore_best", "overfit-early-stop"),
    ]),
    (N_("Where it runs"), [
        control("train.backend", "tiny-gpt"),
    ]),
]

SAMPLING_GROUP: list[tuple[str, list[ControlSpec]]] = [
    (N_("Decoding rule"), [
        control("sampling.prompt", "tiny-gpt"),
        control("sampling.temperature", "tiny-gpt"),
        control("sampling.top_k", "tiny-gpt", spin=(0, 1000, 1)),
        control("sampling.top_p", "tiny-gpt"),
        control("sampling.min_p", "tiny-gpt"),
        control("sampling.greedy", "tiny-gpt"),
        control("sampling.max_new", "tiny-gpt", spin=(1, 5000, 10)),
        control("sampling.seed", "tiny-gpt", spin=(0, 2**31 - 1, 1)),
    ]),
]

SPECS: dict[str, ControlSpec] = {s.path: s for _title, group in GROUPS + SAMPLING_GROUP for s in group}


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


def show_value(v) -> str:
    """How a value reads in an entry field."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def tooltip_text(spec: ControlSpec) -> str:
    """The tooltip in the current language: what it does, whether it rebuilds, and the lesson (names as typed)."""
    when = _("Applies on the next step.") if spec.live else \
        _("{mark} Rebuilds the model (asks before discarding a run).").format(mark=REBUILD_MARK)
    where = _("{path} - lesson: {lesson}").format(path=spec.path, lesson=spec.lesson)
    return f"{_(spec.help)} {when}\n{where}"


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
            relabel.text(ttk.Label(inner, wraplength=width - 10, foreground="#555"),
                         N_("{mark} rebuilds the model; the others apply on the next step"),
                         mark=REBUILD_MARK).pack(fill="x", pady=(0, 4))
        for title, specs in groups:
            box = relabel.text(ttk.LabelFrame(inner, padding=(3, 2)), title)
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
        label = ttk.Label(box)  # the setting's label from its declaration (the catalogs have it), translated
        relabel.keep(label, lambda: label.configure(text=_(spec.label) + mark))
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
        Tooltip(label, lambda: tooltip_text(spec))
        Tooltip(w, lambda: tooltip_text(spec))
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

