"""QLoRA's frozen base (`model.lora.base: nf4`): every targeted linear's weight held only as NF4 codes.

Under LoRA the base weights sit in the frozen buffer (`GPT.frozen`). Under QLoRA the weights of the targeted
linears (`qkv`, `proj`, `fc`, `fc2`, as `model.lora.targets` names them) leave that buffer: each is quantized
once, when the base is loaded, to packed 4-bit NF4 codes with one absmax per `model.lora.block` weights (double-
quantized to int8 under `double_quant`), and the float copy is dropped. The linear's forward and backward decode
it tile by tile (kernels/cpu/qlora.py). Everything else stays in the frozen buffer in the model's dtype: the
embeddings and the output head (a lookup and the logits, which the paper keeps in 16 bits too), norms, biases
and untargeted linears - 4 bits would save little there and cost the most accuracy per byte.

Checkpoints store the packed codes and scales themselves (`state_arrays`), not a float base to quantize again:
a resumed run decodes the very same weights, and a checkpoint is a quarter of the size.
"""

from __future__ import annotations

import numpy as np

from simulator.config import ModelConfig
from simulator.i18n import _
from simulator.model.layout import ParamLayout
from simulator.model.lora import lora_sites, target_shapes
from simulator.model.params import build_layout
from simulator.quant.nf4 import SCALE_BLOCK, Quantized, dequantize, nf4_levels, quantize
from simulator.rules import Problem

PARTS = ("packed", "absmax", "scale_codes", "scale_absmax")  # a Quantized's arrays, as a checkpoint names them


def quantized_names(cfg: ModelConfig) -> list[str]:
    """The base weights held as NF4 under this config (none without QLoRA), in forward order."""
    return [f"{site}.w" for site, _, _ in lora_sites(cfg)] if cfg.lora.quantized else []


def float_base_layout(cfg: ModelConfig) -> ParamLayout:
    """The frozen buffer's tensors: every base tensor, less those QLoRA holds as NF4."""
    gone = set(quantized_names(cfg))
    return ParamLayout([(s.name, s.shape, s.kind) for s in build_layout(cfg) if s.name not in gone])


def qlora_problem(cfg: ModelConfig) -> Problem | None:
    """A block size the packing or a targeted weight cannot take, or None (only under base nf4)."""
    lora = cfg.lora
    if not lora.quantized:
        return None
    if lora.block % 2:
        return Problem("model.lora.block", _("{block} is odd: two 4-bit codes share a byte, so a block must hold an "
                                             "even number of weights").format(block=lora.block),
                       _("use an even size, e.g. 64"), at=("model.lora.block",))
    shapes = target_shapes(cfg)
    for t in lora.targets:
        d_in, d_out = shapes[t]
        if (d_in * d_out) % lora.block:
            what = _("{block} does not divide the {n} weights of target {target} ({d_in} x {d_out}): every NF4 block "
                     "needs its own whole {block} weights").format(block=lora.block, n=d_in * d_out, target=t,
                                                                  d_in=d_in, d_out=d_out)
            return Problem("model.lora.block", what,
                           _("use a divisor of {n}, e.g. {divisor}").format(
                               n=d_in * d_out, divisor=_even_divisor(d_in * d_out, lora.block)),
                           at=("model.lora.block",))
    return None


def _even_divisor(n: int, near: int) -> int:
    """The even divisor of n nearest to `near` (n is even whenever a block could fit: 2 always divides it)."""
    evens = [d for d in range(2, n + 1, 2) if n % d == 0] or [n]
    return min(evens, key=lambda d: (abs(d - near), d))


def quantized_bytes(cfg: ModelConfig) -> int:
    """Bytes of the NF4 base by formula: codes (n / 2), scales (nb float32, or nb int8 + ceil(nb / 256) float32
    + the mean's 4 under double quantization). Equal to `QuantizedBase.nbytes` of a built model."""
    if not cfg.lora.quantized:
        return 0
    total = 0
    for _site, d_in, d_out in lora_sites(cfg):
        n, nb = d_in * d_out, d_in * d_out // cfg.lora.block
        total += n // 2 + (nb + 4 * -(-nb // SCALE_BLOCK) + 4 if cfg.lora.double_quant else 4 * nb)
    return total


class QuantizedBase:
    """The NF4 weights of one model by name ('h0.attn.qkv.w' -> nf4.Quantized), and how they travel."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.names = quantized_names(cfg)
        self.shapes = {f"{site}.w": (d_in, d_out) for site, d_in, d_out in lora_sites(cfg)}
        self.levels = nf4_levels()
        self.weights: dict[str, Quantized] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.weights

    def __getitem__(self, name: str) -> Quantized:
        return self.weights[name]

    def quantize_from(self, tensors: dict[str, np.ndarray]) -> None:
        """Quantizes each targeted weight of `tensors` (float, any dtype); keeps only the codes and scales."""
        lora = self.cfg.lora
        for name in self.names:
            self.weights[name] = quantize(tensors[name], self.levels, lora.block, lora.double_quant, name=name)

    def dequantized(self, name: str, dtype=np.float32) -> np.ndarray:
        """A fresh float copy of weight `name` as the linear sees it (for display and merging, not kept)."""
        return dequantize(self.weights[name]).astype(dtype, copy=False)

    @property
    def nbytes(self) -> int:
        """Bytes held: packed codes and scales (the shared 16-level table is not counted)."""
        return sum(q.nbytes for q in self.weights.values())

    def part_bytes(self) -> dict[str, int]:
        """Bytes by part: the packed codes, the block scales, and the scales' own scales (double quantization)."""
        out = {"codes": 0, "scales": 0, "scale_scales": 0}
        for q in self.weights.values():
            out["codes"] += q.packed.nbytes
            if q.scale_codes is None:
                out["scales"] += q.absmax.nbytes
            else:
                out["scales"] += q.scale_codes.nbytes
                out["scale_scales"] += q.scale_absmax.nbytes + 4  # + the float32 mean
        return out

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The codes and scales as a checkpoint keeps them: 'nf4.NAME.packed', '.absmax' or '.scale_codes', ..."""
        out = {}
        for name, q in self.weights.items():
            for part in PARTS:
                a = getattr(q, part)
                if a is not None:
                    out[f"nf4.{name}.{part}"] = a.copy()
            if q.scale_codes is not None:
                out[f"nf4.{name}.scale_mean"] = np.array(q.scale_mean, np.float64)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> str | None:
        """Restores what `state_arrays` saved; what does not fit, in a sentence (nothing is changed then)."""
        lora, loaded = self.cfg.lora, {}
        for name in self.names:
            n = int(np.prod(self.shapes[name]))
            want = {"packed": (n // 2,)}
            if lora.double_quant:
                want.update(scale_codes=(n // lora.block,), scale_absmax=(-(-(n // lora.block) // SCALE_BLOCK),))
            else:
                want["absmax"] = (n // lora.block,)
            got = {part: arrays.get(f"nf4.{name}.{part}") for part in want}
            bad = [p for p, a in got.items() if a is None or a.shape != want[p]]
            if bad or (lora.double_quant and f"nf4.{name}.scale_mean" not in arrays):
                return _("the saved state has no NF4 {part} of {name} for this model").format(
                    part=bad[0] if bad else "scale_mean", name=name)
            q = Quantized(self.shapes[name], got["packed"].astype(np.uint8), self.levels, lora.block,
                          got.get("absmax"))
            if lora.double_quant:
                q.scale_codes, q.scale_absmax = got["scale_codes"].astype(np.int8), got["scale_absmax"]
                q.scale_mean, q.scale_block = float(arrays[f"nf4.{name}.scale_mean"]), SCALE_BLOCK
            loaded[name] = q
        self.weights = loaded
        return None
