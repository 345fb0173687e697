"""The memory bill of models too large to run here (`memory --what-if 7b | 13b | 70b`): Llama-style shapes,
parameters counted from them, the textbook byte counts of training with AdamW in pure 16-bit and in mixed
precision, the weights in other storage formats, and the activations by Korthikanti et al. 2022.

Bytes here are decimal GB (10^9 bytes), as the textbook figures are.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.i18n import _
from simulator.memory import FORMAT_NOTE, FORMATS, stored_bytes
from simulator.textcols import display_width, pad

GB = 10 ** 9


@dataclass(frozen=True)
class LlamaShape:
    """A Llama-style decoder: RMSNorm, gated (SwiGLU) MLP of three matrices, untied output head, no biases."""

    name: str
    d_model: int
    n_layer: int
    n_head: int
    d_hidden: int  # the gated MLP's hidden width (gate and up: d_model -> d_hidden, down: back)
    nominal: int  # the parameter count the name says (7e9)
    n_kv_head: int | None = None  # grouped-query attention: key/value heads (None: one per query head)
    vocab_size: int = 32000

    @property
    def kv_heads(self) -> int:
        """Key/value heads."""
        return self.n_kv_head or self.n_head


LLAMA = {"7b": LlamaShape("7B", 4096, 32, 32, 11008, 7 * 10 ** 9),
         "13b": LlamaShape("13B", 5120, 40, 40, 13824, 13 * 10 ** 9),
         "70b": LlamaShape("70B", 8192, 80, 64, 28672, 70 * 10 ** 9, n_kv_head=8)}


def tensor_sizes(m: LlamaShape) -> list[int]:
    """Element counts of every tensor: the token embedding; per layer q, k, v, o, the MLP's gate, up and down,
    two RMSNorm gains; the final norm and the output head."""
    C, kv = m.d_model, m.kv_heads * (m.d_model // m.n_head)
    layer = [C * C, C * kv, C * kv, C * C, C * m.d_hidden, C * m.d_hidden, m.d_hidden * C, C, C]
    return [m.vocab_size * C] + layer * m.n_layer + [C, m.vocab_size * C]


def parameter_count(m: LlamaShape) -> int:
    """Parameters of the model, counted from its shapes."""
    return sum(tensor_sizes(m))


@dataclass(frozen=True)
class AdamWBill:
    """Bytes of full fine-tuning with AdamW under one precision convention."""

    weights: int
    gradients: int
    moments: int  # AdamW's m and v
    master: int  # fp32 master weights (mixed precision only)

    @property
    def total(self) -> int:
        """Every row together."""
        return self.weights + self.gradients + self.moments + self.master


def adamw_pure16(n: int) -> AdamWBill:
    """Everything in 16-bit: weights, gradients and both moments, 2 bytes each (8 bytes per parameter)."""
    return AdamWBill(weights=2 * n, gradients=2 * n, moments=2 * 2 * n, master=0)


def adamw_mixed(n: int) -> AdamWBill:
    """Mixed precision: 16-bit weights and gradients, plus fp32 master weights and two fp32 moments (12 bytes
    per parameter beyond the 16-bit ones, 16 in all)."""
    return AdamWBill(weights=2 * n, gradients=2 * n, moments=2 * 4 * n, master=4 * n)


def layer_activations(s: int, b: int, h: int, a: int, recompute: bool) -> int:
    """Bytes one transformer layer keeps for the backward in 16-bit, by Korthikanti et al. 2022: s·b·h·(34 + 5·a·s/h),
    or s·b·h·34 with the attention scores recomputed (selective recomputation; FlashAttention-style tiling)."""
    return s * b * h * 34 + (0 if recompute else 5 * a * s * s * b)  # s·b·h · 5·a·s/h = 5·a·s²·b, exactly


def _gb(n: float) -> str:
    return f"{n / GB:,.2f}"


def sci(n: int, digits: int = 3) -> str:
    """6738415616 -> '6.74e9', 13015864320 -> '13.0e9': `digits` significant digits, the exponent a multiple of 3."""
    exponent = 3 * ((len(str(n)) - 1) // 3)
    mantissa = n / 10 ** exponent
    return f"{mantissa:.{max(0, digits - len(str(int(mantissa))))}f}e{exponent}"


def _row(cells: list[str], widths: list[int], left: int = 1) -> str:
    """One line of cells, the first `left` left-aligned, the rest right-aligned, each padded to its width in terminal
    columns (a Chinese character takes two)."""
    return "".join(pad(c, w, right=i >= left) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def _widths(table: list[list[str]], least: list[int], gap: int) -> list[int]:
    """Each column's width: at least `least`, and wide enough for its widest cell and `gap` columns of space."""
    return [max(w, max(display_width(row[i]) for row in table) + gap) for i, w in enumerate(least)]


def whatif_report(key: str, batch: int = 1, seq: int = 2048) -> str:
    """`memory --what-if KEY`: parameters, weights per format, AdamW's bill both ways, activations."""
    m = LLAMA[key]
    n, sizes = parameter_count(m), tensor_sizes(m)
    names = {"nf4": "NF4"}
    book = sci(m.nominal, digits=1)
    shape = dict(name=m.name, d_model=m.d_model, n_layer=m.n_layer, n_head=m.n_head, kv_heads=m.kv_heads,
                 d_hidden=m.d_hidden, vocab=m.vocab_size)
    if m.kv_heads != m.n_head:
        head = _("Llama-style {name}: d_model {d_model}, {n_layer} layers, {n_head} heads ({kv_heads} key/value heads, "
                 "GQA),\n  gated (SwiGLU) MLP hidden {d_hidden} = 3 matrices, vocab {vocab}, untied output head")
    else:
        head = _("Llama-style {name}: d_model {d_model}, {n_layer} layers, {n_head} heads ({kv_heads} key/value "
                 "heads),\n  gated (SwiGLU) MLP hidden {d_hidden} = 3 matrices, vocab {vocab}, untied output head")
    nf4 = stored_bytes(sizes, "nf4")
    formats = [[_("weights stored as")] + [names.get(f, f) for f in FORMATS],
               [_("GB")] + [_gb(stored_bytes(sizes, f)) for f in FORMATS]]
    widths = _widths(formats, [20] + [11] * len(FORMATS), gap=2)
    lines = [head.format(**shape),
             _("parameters: {n:,} = {sci} (counted from these shapes; the name's {name} is the nominal {book})").format(
                 n=n, sci=sci(n), name=m.name, book=book),
             _("bytes in decimal GB (1 GB = 10^9 bytes), as the textbook figures are"), "",
             *(_row(row, widths) for row in formats),
             _(FORMAT_NOTE),
             _("16-bit {b16} GB vs NF4 {nf4} GB = 4-bit codes {codes} GB + float16 scales {scales} GB (textbook at "
               "{book}: {book16:g} vs {book4:g} GB)").format(
                 b16=_gb(2 * n), nf4=_gb(nf4), codes=_gb(n / 2), scales=_gb(nf4 - n / 2), book=book,
                 book16=2 * m.nominal / GB, book4=m.nominal / 2 / GB), ""]
    pure, mixed = adamw_pure16(n), adamw_mixed(n)
    tp, tm = adamw_pure16(m.nominal), adamw_mixed(m.nominal)
    rows = [(_("weights, 16-bit"), "weights"), (_("gradients, 16-bit"), "gradients"),
            (_("AdamW moments m and v"), "moments"), (_("fp32 master weights"), "master"), (_("total"), "total")]
    table = [[_("full fine-tuning with AdamW, GB"), _("pure 16-bit"), _("mixed precision"),
              _("textbook at {book}: pure / mixed").format(book=book)]]
    for label, field in rows:
        said = " / ".join(f"{v / GB:,.0f}" if v else "-" for v in (getattr(tp, field), getattr(tm, field)))
        mine = getattr(pure, field)
        table.append([label, _gb(mine) if mine else "-", _gb(getattr(mixed, field)), said])
    widths = _widths(table, [34, 13, 17, 32], gap=2)
    lines += [_row(row, widths) for row in table]
    lines += [_("pure 16-bit: weights, gradients and both moments in 16-bit (8 bytes per parameter)."),
              _("mixed precision: 16-bit weights and gradients for the forward and backward, plus fp32 master "
                "weights\n  and two fp32 moments = 12 bytes per parameter beyond the 16-bit weights and gradients: "
                "{here} GB here,\n  {nominal:,.0f} GB at the nominal {book} (16 bytes per parameter in all)").format(
                  here=_gb(12 * n), nominal=12 * m.nominal / GB, book=book), ""]
    s, b, h, a = seq, batch, m.d_model, m.n_head
    full, tiled = layer_activations(s, b, h, a, False), layer_activations(s, b, h, a, True)
    lines += [_("activations for --batch {b} --seq {s}, 16-bit, by Korthikanti et al. 2022 (per layer, x {n_layer} "
                "layers;\nembeddings and logits not included):").format(b=b, s=s, n_layer=m.n_layer),
              "  " + _("without recomputation: s·b·h·(34 + 5·a·s/h) = {s}·{b}·{h}·(34 + {term:g}) = {bytes:,} bytes a "
                       "layer, {gb} GB").format(s=s, b=b, h=h, term=5 * a * s / h, bytes=full,
                                                 gb=_gb(full * m.n_layer)),
              "  " + _("attention scores recomputed (FlashAttention-style tiling): s·b·h·34 = {bytes:,} bytes a layer, "
                       "{gb} GB").format(bytes=tiled, gb=_gb(tiled * m.n_layer)),
              "  " + _("(the formula as published, for a GPT block: MLP 4h, one key/value head per query head, dropout "
                       "masks;\n  a gated MLP and grouped-query attention change the 34)")]
    return "\n".join(lines)
