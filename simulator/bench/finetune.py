"""Fine-tuning numbers (`python -m simulator.bench.finetune`): a LoRA step against a full step of the same
model, and NF4 quantize / dequantize throughput against a plain copy measured in the same run.

Steps alternate (full, LoRA, full, ...) so a busy machine slows both alike; each figure is the best of
the repeats, the least disturbed one.
"""

from __future__ import annotations

import time

import numpy as np

from simulator.bench.step import SHAPES


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def lora_vs_full(shape_name: str = "small", rank: int = 8, repeats: int = 15) -> dict:
    """Best seconds per training step, full fine-tuning vs LoRA (every linear adapted) at one bench shape."""
    from simulator.config import LoraConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from simulator.data.corpus import builtin_corpus
    from simulator.data.dataset import TextDataset
    from simulator.session import TrainingSession

    s = next(x for x in SHAPES if x.name == shape_name)
    data = TextDataset(builtin_corpus(), 0.1)
    sessions = {}
    for label, lora in (("full", LoraConfig()), (f"LoRA r={rank}", LoraConfig(rank=rank, alpha=2.0 * rank))):
        model = ModelConfig(d_model=s.d, n_layer=s.L, n_head=s.H, seq_len=s.T, lora=lora)
        cfg = RunConfig(model=model, optim=OptimConfig(name="adamw"),
                        train=TrainConfig(batch_size=s.B, eval_every=0, stats_every=0))
        sessions[label] = TrainingSession(cfg, data)
        for _ in range(2):  # compile and warm up
            sessions[label].step()
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(repeats):
        for label, session in sessions.items():
            best[label] = min(best[label], _best(session.step, 1))
    trainable = {label: session.model.layout.size for label, session in sessions.items()}
    return {"shape": shape_name, "seconds": best, "trainable": trainable}


def nf4_throughput(n: int = 1 << 24, repeats: int = 5) -> dict:
    """GB/s of NF4 quantize (float32 read) and dequantize (float32 written), and of a float32 copy (read + write)."""
    from simulator.quant.nf4 import dequantize, quantize

    w = np.random.default_rng(0).normal(0.0, 0.02, n).astype(np.float32)
    out, copy = np.empty_like(w), np.empty_like(w)
    q = quantize(w)
    dequantize(q, out)  # compile
    tq = _best(lambda: quantize(w), repeats)
    td = _best(lambda: dequantize(q, out), repeats)
    tc = _best(lambda: np.copyto(copy, w), repeats)
    gb = w.nbytes / 1e9
    return {"quantize": gb / tq, "dequantize": gb / td, "copy": 2 * gb / tc}


def main() -> None:
    r = lora_vs_full()
    full, lora = r["seconds"].items()
    print(f"{r['shape']} shape: {full[0]} {1e3 * full[1]:.1f} ms/step ({r['trainable'][full[0]]:,} trainable), "
          f"{lora[0]} {1e3 * lora[1]:.1f} ms/step ({r['trainable'][lora[0]]:,} trainable): "
          f"{lora[1] / full[1]:.2f}x")
    t = nf4_throughput()
    print(f"NF4 quantize {t['quantize']:.2f} GB/s, dequantize {t['dequantize']:.2f} GB/s; "
          f"float32 copy {t['copy']:.2f} GB/s (read + write)")


if __name__ == "__main__":
    main()
