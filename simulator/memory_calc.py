"""The memory bill of models too large to run here (`memory --what-if 7b | 13b | 70b`): Llama-style shapes,
parameters counted from them, the textbook byte counts of training with AdamW in pure 16-bit and in mixed
precision, the weights in other storage formats, and the activations by Korthikanti et al. 2022.

Bytes here are decimal GB (10^9 bytes), as the textbook figures are.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.memory import FORMAT_NOTE, FORMATS, stored_bytes

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


def whatif_report(key: str, batch: int = 1, seq: int = 2048) -> str:
    """`memory --what-if KEY`: parameters, weights per format, AdamW's bill both ways, activations."""
    m = LLAMA[key]
    n, sizes = parameter_count(m), tensor_sizes(m)
    names = {"nf4": "NF4"}
    book = sci(m.nominal, digits=1)
    lines = [f"Llama-style {m.name}: d_model {m.d_model}, {m.n_layer} layers, {m.n_head} heads ({m.kv_heads} "
             f"key/value heads{', GQA' if m.kv_heads != m.n_head else ''}),",
             f"  gated (SwiGLU) MLP hidden {m.d_hidden} = 3 matrices, vocab {m.vocab_size}, untied output head",
             f"parameters: {n:,} = {sci(n)} (counted from these shapes; the name's {m.name} is the nominal {book})",
             "bytes in decimal GB (1 GB = 10^9 bytes), as the textbook figures are", "",
             f"{'weights stored as':<20}" + "".join(f"{names.get(f, f):>11}" for f in FORMATS),
             f"{'GB':<20}" + "".join(f"{_gb(stored_bytes(sizes, f)):>11}" for f in FORMATS),
             FORMAT_NOTE,
             f"16-bit {_gb(2 * n)} GB vs NF4 {_gb(stored_bytes(sizes, 'nf4'))} GB = 4-bit codes {_gb(n / 2)} GB + "
             f"float16 scales {_gb(stored_bytes(sizes, 'nf4') - n / 2)} GB (textbook at {book}: "
             f"{2 * m.nominal / GB:g} vs {m.nominal / 2 / GB:g} GB)", ""]
    pure, mixed = adamw_pure16(n), adamw_mixed(n)
    tp, tm = adamw_pure16(m.nominal), adamw_mixed(m.nominal)
    rows = [("weights, 16-bit", "weights"), ("gradients, 16-bit", "gradients"),
            ("AdamW moments m and v", "moments"), ("fp32 master weights", "master"), ("total", "total")]
    lines.append(f"{'full fine-tuning with AdamW, GB':<34}{'pure 16-bit':>13}{'mixed precision':>17}"
                 f"{f'textbook at {book}: pure / mixed':>32}")
    for label, field in rows:
        said = " / ".join(f"{v / GB:,.0f}" if v else "-" for v in (getattr(tp, field), getattr(tm, field)))
        mine = getattr(pure, field)
        lines.append(f"{label:<34}{_gb(mine) if mine else '-':>13}{_gb(getattr(mixed, field)):>17}{said:>32}")
    lines += ["pure 16-bit: weights, gradients and both moments in 16-bit (8 bytes per parameter).",
              "mixed precision: 16-bit weights and gradients for the forward and backward, plus fp32 master weights",
              f"  and two fp32 moments = 12 bytes per parameter beyond the 16-bit weights and gradients: "
              f"{_gb(12 * n)} GB here,", f"  {12 * m.nominal / GB:,.0f} GB at the nominal {book} "
              "(16 bytes per parameter in all)", ""]
    s, b, h, a = seq, batch, m.d_model, m.n_head
    full, tiled = layer_activations(s, b, h, a, False), layer_activations(s, b, h, a, True)
    lines += [f"activations for --batch {b} --seq {s}, 16-bit, by Korthikanti et al. 2022 (per layer, x {m.n_layer} "
              "layers;", "embeddings and logits not included):",
              f"  without recomputation: s·b·h·(34 + 5·a·s/h) = {s}·{b}·{h}·(34 + {5 * a * s / h:g}) = "
              f"{full:,} bytes a layer, {_gb(full * m.n_layer)} GB",
              f"  attention scores recomputed (FlashAttention-style tiling): s·b·h·34 = {tiled:,} bytes a layer,"
              f" {_gb(tiled * m.n_layer)} GB",
              "  (the formula as published, for a GPT block: MLP 4h, one key/value head per query head, dropout "
              "masks;\n  a gated MLP and grouped-query attention change the 34)"]
    return "\n".join(lines)
