"""What a GPT session will allocate, computed before anything is allocated: a model that cannot fit is refused
with one sentence instead of dying in numpy.

The rows follow the buffers the session really makes (a test compares them with a built session's, byte for
byte): the flat weights and their gradients, the optimizer's state buffers and decay mask, the pre-clip gradient
copy, the forward arena (`activation_shapes`) and the activations' gradients (`activation_gradient_bytes`, which
mirrors `GPT._build_ops`). `python main.py memory PRESET` prints each row next to the same row read from a built
session (`measure`, `preset_report`), the forward arena by kind of site, and the weights in other storage formats;
models too large to run are `memory_calc.py`'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from simulator.config import ModelConfig, OptimConfig, RunConfig
from simulator.i18n import N_, _, ngettext
from simulator.model.gpt import activation_shapes
from simulator.model.lora import lora_layout
from simulator.model.params import build_layout, has_final_norm
from simulator.model.qlora import float_base_layout, quantized_bytes
from simulator.textcols import display_width, pad

GIB = 1024 ** 3
MIB = 1024 ** 2

# What-if storage of the weights: bits per weight of the codes, and the block that shares one float16 absmax
# scale (0: no scales). NF4 is QLoRA's: 4-bit codes + one float16 scale per 64 weights = 4.25 bits per weight.
# FORMAT_NOTE is translated where shown: _(FORMAT_NOTE).
FORMATS = {"float32": (32, 0), "float16": (16, 0), "bfloat16": (16, 0), "int8": (8, 64), "nf4": (4, 64)}
SCALE_BYTES = 2
FORMAT_NOTE = N_("int8 and NF4 are block-wise: one float16 absmax scale per block of 64 weights of each tensor\n"
                  "(8.25 and 4.25 bits per weight); float16 and bfloat16 differ in range, not in bytes")


@dataclass(frozen=True)
class MemoryBill:
    """Bytes a session of one config holds, by kind."""

    parameters: int
    gradients: int  # the gradients, plus the pre-clip copy while clipping is on
    optimizer: int  # the optimizer's state buffers and its weight-decay mask
    activations: int  # the forward arena: activations, caches for the backward, scratch
    activation_gradients: int
    frozen: int = 0  # LoRA: the frozen base weights (then `parameters` are the adapters, the only trainable ones)
    quantized: int = 0  # QLoRA: the targeted linears' NF4 codes and scales (they are not in `frozen` then)

    @property
    def total(self) -> int:
        """Every row together."""
        return (self.parameters + self.frozen + self.quantized + self.gradients + self.optimizer + self.activations
                + self.activation_gradients)

    def sentence(self) -> str:
        """'5.2 GiB (weights 1 GiB, gradients 1 GiB, optimizer state 2 GiB, activations 1.2 GiB)'."""
        acts = self.activations + self.activation_gradients
        return _("{total} (weights {weights}, gradients {gradients}, optimizer state {optimizer}, activations "
                 "{activations})").format(total=gib(self.total),
                                          weights=gib(self.parameters + self.frozen + self.quantized),
                                          gradients=gib(self.gradients), optimizer=gib(self.optimizer),
                                          activations=gib(acts))


def gib(n: int) -> str:
    """Bytes as GiB a person reads: '0.0234 GiB', '22.5 GiB', '5,070 GiB'."""
    v = n / GIB
    return f"{v:,.0f} GiB" if v >= 100 else f"{v:.3g} GiB"


def optimizer_tensors(optim: OptimConfig) -> int:
    """State buffers per parameter: SGD 0 (1 with momentum), AdaGrad 1, RMSProp 1 (2 with momentum), Adam 2, FTRL 2."""
    with_momentum = 1 if optim.momentum != 0 else 0
    return {"sgd": with_momentum, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1 + with_momentum,
            "adam": 2, "adamw": 2, "adam_l2": 2, "ftrl": 2}[optim.name]


def activation_gradient_bytes(cfg: ModelConfig, B: int, T: int, itemsize: int) -> int:
    """The gradient arena of the activations, as `GPT._build_ops` lays it out.

    One (N, C) gradient for the stream entering the model and one for each norm's and each branch's output;
    a residual add keeps its stream's buffer; the gradients inside one op (before dropout, the heads, the
    fused qkv, the MLP's hidden layer, the tiled attention's q, k, v) share one buffer across layers.
    """
    C, N, L = cfg.d_model, B * T, cfg.n_layer
    NKV, HS = cfg.kv_heads, cfg.head_size
    per_stream = 1 + 1  # x0 and the shared pre-dropout buffer
    norms = 0 if cfg.norm == "none" else 2 * L + (1 if has_final_norm(cfg) else 0)
    branches = 2 * L
    floats = (per_stream + norms + branches) * N * C
    floats += N * C  # the heads' output (B, NH, T, HS), shared
    floats += N * (C + 2 * NKV * HS)  # the fused qkv, shared
    floats += N * cfg.d_hidden  # the MLP's hidden layer, shared
    if cfg.attention.impl == "tiled":  # its backward adds into dq, dk, dv (naive ones are scratch in the arena)
        floats += N * C + 2 * B * NKV * T * HS
    if cfg.positional != "learned":  # a fixed position table's gradient: computed, then dropped
        floats += T * C
    return floats * itemsize


def memory_bill(cfg: RunConfig, vocab_size: int | None = None) -> MemoryBill:
    """The bytes a TrainingSession of `cfg` allocates for training (vocab_size: when the config leaves it out)."""
    model = cfg.model
    if model.vocab_size is None:
        assert vocab_size is not None, "the vocabulary comes from the data: pass vocab_size"
        model = replace(model, vocab_size=vocab_size)
    itemsize = np.dtype(cfg.train.dtype).itemsize
    n = trainable_layout(model).size  # under LoRA the adapters; the base weights are `frozen`
    frozen = float_base_layout(model).size * itemsize if model.lora.on else 0  # QLoRA: less its NF4 weights
    B, T = cfg.train.batch_size, model.seq_len
    forward = sum(int(np.prod(s)) for s in activation_shapes(model, B, T).values()) * itemsize
    clip_copy = n * itemsize if cfg.optim.grad_clip > 0 else 0
    return MemoryBill(parameters=n * itemsize, gradients=n * itemsize + clip_copy,
                      optimizer=optimizer_tensors(cfg.optim) * n * itemsize + n,  # + the uint8 decay mask
                      activations=forward, activation_gradients=activation_gradient_bytes(model, B, T, itemsize),
                      frozen=frozen, quantized=quantized_bytes(model))


def trainable_layout(model: ModelConfig):
    """The tensors that get gradients and optimizer state: every weight, or LoRA's adapters alone."""
    return lora_layout(model) if model.lora.on else build_layout(model)


def available_bytes() -> int | None:
    """Memory the system could give a new allocation now (Linux: MemAvailable), or None where it cannot tell."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def stored_bytes(sizes: Iterable[int], fmt: str) -> int:
    """Bytes of tensors of these element counts stored in `fmt` (a FORMATS key), their scales included."""
    bits, block = FORMATS[fmt]
    return sum(-(-n * bits // 8) + (-(-n // block) * SCALE_BYTES if block else 0) for n in sizes)


# The forward arena by kind of site: the two that scale with T^2 or T, the MLP's hidden layer, the logits.
# The labels are translated where shown: _(KINDS[kind]).
KINDS = {"probs": N_("attention probabilities, L·B·H·T²"), "datt": N_("their gradient (one layer at a time), B·H·T²"),
         "lse": N_("log-sum-exps (tiled), L·B·H·T"), "mlp": N_("MLP hidden layer: fc, act 2·L·B·T·Dh; dact B·T·Dh"),
         "logits": N_("logits and dlogits, 2·B·T·V"),
         "rest": N_("everything else (stream, norms, q/k/v, dropout, scratch)")}


def activation_kinds(model: ModelConfig, B: int, T: int, itemsize: int) -> dict[str, int]:
    """The forward arena's bytes by kind of site (KINDS), each by its formula; 'rest' is what the others leave."""
    L, NH, N, V = model.n_layer, model.n_head, B * T, model.vocab_size
    naive = model.attention.impl == "naive"
    floats = {"probs": L * B * NH * T * T if naive else 0, "datt": B * NH * T * T if naive else 0,
              "lse": 0 if naive else L * B * NH * T, "mlp": (2 * L + 1) * N * model.d_hidden, "logits": 2 * N * V}
    out = {k: v * itemsize for k, v in floats.items()}
    out["rest"] = sum(int(np.prod(s)) for s in activation_shapes(model, B, T).values()) * itemsize - sum(out.values())
    return out


def site_kind(name: str) -> str:
    """The KINDS key of one array of the forward arena, by its name (`activation_shapes`)."""
    if name.endswith(".att"):
        return "probs"
    if name.endswith(".lse"):
        return "lse"
    if name.endswith((".fc", ".act")) or name == "dact":
        return "mlp"
    return {"datt": "datt", "logits": "logits", "dlogits": "logits"}.get(name, "rest")


def measure(session) -> tuple[MemoryBill, dict[str, int]]:
    """The bill and the arena's bytes by kind, read from a built session's buffers (after a step: the clip
    phase makes its pre-clip copy on the first one)."""
    m, opt = session.model, session.optimizer
    bill = MemoryBill(parameters=m.params.nbytes, gradients=m.grads.nbytes + session.preclip_copy_bytes,
                      optimizer=sum(b.nbytes for b in opt.state.values()) + opt.decay_mask.nbytes,
                      activations=m.acts.nbytes, activation_gradients=m.grads_acts.nbytes,
                      frozen=m.frozen.nbytes if m.frozen is not None else 0,
                      quantized=m.qbase.nbytes if m.qbase is not None else 0)
    kinds = dict.fromkeys(KINDS, 0)
    for name, a in m.acts.arrays.items():
        kinds[site_kind(name)] += a.nbytes
    return bill, kinds


def other_impl(cfg: RunConfig) -> RunConfig:
    """The same run with the other attention implementation (naive <-> tiled)."""
    impl = "tiled" if cfg.model.attention.impl == "naive" else "naive"
    return replace(cfg, model=replace(cfg.model, attention=replace(cfg.model.attention, impl=impl)))


def preset_report(cfg: RunConfig, dataset) -> str:
    """`memory PRESET`: each row by formula next to the buffers of a session built from it (when it fits),
    the activations by kind of site, the other attention implementation, and the weights in other formats."""
    from simulator.session import TrainingSession  # imported here: it builds the kernels

    model = cfg.model if cfg.model.vocab_size else replace(cfg.model, vocab_size=dataset.tokenizer.vocab_size)
    cfg = replace(cfg, model=model)
    itemsize = np.dtype(cfg.train.dtype).itemsize
    B, T = cfg.train.batch_size, model.seq_len
    bill, kinds = memory_bill(cfg), activation_kinds(model, B, T, itemsize)
    have = available_bytes()
    got, session = None, None
    if have is None or bill.total <= have:
        session = TrainingSession(cfg, dataset)
        session.step()
        got = measure(session)
    n = build_layout(model).size
    shape = dict(name=getattr(cfg, "name", "") or _("preset"), d_model=model.d_model, n_layer=model.n_layer,
                 n_head=model.n_head, kv_heads=model.kv_heads, d_hidden=model.d_hidden, vocab=model.vocab_size,
                 n=f"{n:,}")
    if model.lora.on:
        head = ngettext("{name}: d_model {d_model}, {n_layer} layer, {n_head} heads ({kv_heads} key/value), MLP hidden "
                        "{d_hidden}, vocab {vocab}; {n} parameters, {trainable} of them trainable (LoRA adapters)",
                        "{name}: d_model {d_model}, {n_layer} layers, {n_head} heads ({kv_heads} key/value), MLP "
                        "hidden {d_hidden}, vocab {vocab}; {n} parameters, {trainable} of them trainable (LoRA "
                        "adapters)", model.n_layer).format(trainable=f"{trainable_layout(model).size:,}", **shape)
    else:
        head = ngettext("{name}: d_model {d_model}, {n_layer} layer, {n_head} heads ({kv_heads} key/value), MLP hidden "
                        "{d_hidden}, vocab {vocab}; {n} parameters",
                        "{name}: d_model {d_model}, {n_layer} layers, {n_head} heads ({kv_heads} key/value), MLP "
                        "hidden {d_hidden}, vocab {vocab}; {n} parameters", model.n_layer).format(**shape)
    lines = [head,
             _("one training step at batch_size {batch} x seq_len {seq}, {dtype} ({itemsize} bytes a number), "
               "{optimizer}").format(batch=B, seq=T, dtype=cfg.train.dtype, itemsize=itemsize,
                                     optimizer=cfg.optim.name),
             _("bytes, and sizes in binary units (1 MiB = 2^20 bytes)"), ""]
    k = optimizer_tensors(cfg.optim)
    lora = model.lora
    rows = [(_("parameters") if not lora.on else _("LoRA adapters (rank {rank}, trainable)").format(rank=lora.rank),
             "parameters", None)]
    if lora.quantized:
        rows.append((_("frozen base, float part (embeddings, norms, biases, head)"), "frozen", None))
        rows.append((_("frozen base, NF4 part (targeted linears: codes + scales, double-quantized)")
                     if lora.double_quant else _("frozen base, NF4 part (targeted linears: codes + scales)"),
                     "quantized", None))
    elif lora.on:
        rows.append((_("frozen base weights (no gradient, no optimizer state)"), "frozen", None))
    clipped = _("gradients + pre-clip copy (grad_clip {clip:g})").format(clip=cfg.optim.grad_clip)
    rows += [(clipped if cfg.optim.grad_clip > 0 else _("gradients"), "gradients", None),
             (ngettext("optimizer state ({optimizer}: {k} tensor + decay mask)",
                       "optimizer state ({optimizer}: {k} tensors + decay mask)", k).format(optimizer=cfg.optim.name,
                                                                                           k=k), "optimizer", None),
             (_("activations kept for the backward"), "activations", None)]
    rows += [(f"  {_(KINDS[kind])}", None, kind) for kind in KINDS if kinds[kind] or (got and got[1][kind])]
    rows += [(_("activation gradients"), "activation_gradients", None), (_("total"), "total", None)]
    table = [[_("row"), _("predicted"), _("size"), _("measured")]]
    for label, field, kind in rows:
        want = getattr(bill, field) if field else kinds[kind]
        if got is None:
            seen = (_("not built: it needs {need} ({free} available)").format(need=gib(bill.total), free=gib(have))
                    if field == "total" else "-")
        else:
            seen = f"{getattr(got[0], field) if field else got[1][kind]:,}"
        table.append([label, f"{want:,}", size(want), seen])
    lines += _columns(table, right=(False, True, True, got is not None))
    lines.append(_("measured: the real buffers of a session built from the preset, after one training step")
                 if got is not None else _("measured: not built, the model does not fit in this machine's free memory"))
    if lora.quantized:
        lines += ["", *_qlora_lines(model, bill, session)]
    lines += ["", _attention_line(cfg, bill, kinds), "", _formats_table(build_layout(model)), _(FORMAT_NOTE)]
    return "\n".join(lines)


def _qlora_lines(model: ModelConfig, bill: MemoryBill, session) -> list[str]:
    """QLoRA's base against the same weights in float32: the targeted linears, and the whole frozen base."""
    from simulator.model.qlora import quantized_names

    n = sum(build_layout(model).by_name[name].size for name in quantized_names(model))
    f32 = 4 * n
    values = dict(matrices=len(quantized_names(model)), n=n, f32=f32, block=model.lora.block, nf4=bill.quantized,
                  ratio=bill.quantized / f32, bits=8 * bill.quantized / n)
    if model.lora.double_quant:
        first = _("QLoRA: the {matrices} targeted weight matrices ({n:,} numbers) in float32 would take {f32:,} bytes; "
                  "as NF4 (block {block}, scales double-quantized) {nf4:,} bytes = {ratio:.3f} of float32, {bits:.3f} "
                  "bits per weight")
    else:
        first = _("QLoRA: the {matrices} targeted weight matrices ({n:,} numbers) in float32 would take {f32:,} bytes; "
                  "as NF4 (block {block}) {nf4:,} bytes = {ratio:.3f} of float32, {bits:.3f} bits per weight")
    lines = [first.format(**values)]
    if session is not None:
        parts = session.model.qbase.part_bytes()
        lines.append("  " + _("measured: packed codes {codes:,} + scales {scales:,} + the scales' scales "
                              "{scale_scales:,} = {total:,} bytes").format(total=sum(parts.values()), **parts))
    whole = 4 * build_layout(model).size
    held = bill.frozen + bill.quantized
    lines.append("  " + _("the whole frozen base: {held:,} bytes (float part {frozen:,} + NF4 {nf4:,}) against "
                          "{whole:,} for the float32 model = {ratio:.3f}").format(
        held=held, frozen=bill.frozen, nf4=bill.quantized, whole=whole, ratio=held / whole))
    return lines


def _attention_line(cfg: RunConfig, bill: MemoryBill, kinds: dict[str, int]) -> str:
    """Which attention the preset uses, what it keeps, and what the other implementation would need."""
    other = other_impl(cfg)
    m, o = cfg.model, other.model
    theirs = activation_kinds(o, cfg.train.batch_size, m.seq_len, np.dtype(cfg.train.dtype).itemsize)
    total = memory_bill(other).total
    if m.attention.impl == "naive":
        return _("attention: naive, which keeps the probabilities ({probs:,} bytes, plus their gradient {datt:,});\n"
                 "  tiled would keep only the log-sum-exps ({lse:,} bytes): its training step would need\n"
                 "  {other:,} bytes in all (this one {this:,})").format(
            probs=kinds["probs"], datt=kinds["datt"], lse=theirs["lse"], other=total, this=bill.total)
    return _("attention: tiled, which keeps only the log-sum-exps ({lse:,} bytes);\n  naive would keep the "
             "probabilities ({probs:,} bytes, plus their gradient {datt:,}): its training step would need\n"
             "  {other:,} bytes in all (this one {this:,})").format(
        lse=kinds["lse"], probs=theirs["probs"], datt=theirs["datt"], other=total, this=bill.total)


def _formats_table(layout) -> str:
    """The weights row again for every storage format of FORMATS."""
    sizes = [s.size for s in layout]
    table = [[_("weights stored as")] + [{"nf4": "NF4"}.get(f, f) for f in FORMATS],
             [_("bytes")] + [f"{stored_bytes(sizes, f):,}" for f in FORMATS],
             [_("bits per weight")] + [f"{8 * stored_bytes(sizes, f) / sum(sizes):.3g}" for f in FORMATS]]
    return "\n".join(_columns(table, right=(False,) + (True,) * len(FORMATS)))


def _columns(table: list[list[str]], right: tuple[bool, ...]) -> list[str]:
    """Rows of cells as lines of aligned columns (right-aligned where `right` says), two spaces apart; widths are
    terminal columns, so a Chinese label (two columns a character) does not shift the numbers after it."""
    widths = [max(display_width(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(pad(c, w, r) for c, w, r in zip(row, widths, right, strict=True)).rstrip() for row in table]


def size(n: int) -> str:
    """Bytes in binary units a person reads: '418 KiB', '19.4 MiB', '5,069 GiB'."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            v = n / scale
            return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    return f"{n} B"
