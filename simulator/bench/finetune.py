"""Fine-tuning numbers (`python -m simulator.bench.finetune`): a LoRA step against a full step of the same
model, QLoRA's dequantize-in-the-linear against LoRA's float32 linear (the linears alone, then whole steps),
and NF4 quantize / dequantize throughput against a plain copy measured in the same run.

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


def qlora_vs_lora_linears(shape_name: str = "small", rank: int = 8, repeats: int = 15, double: bool = True) -> dict:
    """Best seconds of one forward + backward of every kind of adapted linear at a bench shape (N = B x T rows):
    the float32 base (BLAS on W) against the NF4 base decoded tile by tile, the same adapters on both."""
    from simulator.config import LoraConfig, ModelConfig
    from simulator.kernels.cpu.linear import linear_backward, linear_forward
    from simulator.kernels.cpu.lora import lora_backward, lora_forward
    from simulator.kernels.cpu.qlora import TILE, qlora_linear_backward, qlora_linear_forward
    from simulator.model.lora import target_shapes
    from simulator.quant.nf4 import quantize

    s = next(x for x in SHAPES if x.name == shape_name)
    N = s.B * s.T
    shapes = target_shapes(ModelConfig(d_model=s.d, n_head=s.H, seq_len=s.T, lora=LoraConfig(rank=rank)))
    rng = np.random.default_rng(0)
    widest = max(max(d) for d in shapes.values())
    scratch, prod = np.empty(TILE * widest, np.float32), np.empty(N * TILE, np.float32)
    u, du, tmp = np.empty((N, rank), np.float32), np.empty((N, rank), np.float32), np.empty(N * widest, np.float32)

    def pair(d_in, d_out):
        w = rng.normal(0, 0.02, (d_in, d_out)).astype(np.float32)
        q = quantize(w, double=double)
        bias = np.zeros(d_out, np.float32)
        x, dout = rng.normal(size=(N, d_in)).astype(np.float32), rng.normal(size=(N, d_out)).astype(np.float32)
        a = rng.normal(0, 0.1, (rank, d_in)).astype(np.float32)
        b = rng.normal(0, 0.1, (d_out, rank)).astype(np.float32)
        da, db = np.zeros_like(a), np.zeros_like(b)
        out, dx = np.empty((N, d_out), np.float32), np.empty((N, d_in), np.float32)
        t_out, t_in = tmp[:N * d_out].reshape(N, d_out), tmp[:N * d_in].reshape(N, d_in)

        def dense():
            linear_forward(out, x, w, bias)
            lora_forward(out, u, x, a, b, 2.0, t_out)
            linear_backward(dx, None, None, dout, x, w)  # the frozen W: the input gradient only
            lora_backward(dx, da, db, dout, x, u, a, b, 2.0, du, t_in)

        def nf4():
            qlora_linear_forward(out, x, q, bias, scratch)
            lora_forward(out, u, x, a, b, 2.0, t_out)
            qlora_linear_backward(dx, dout, q, scratch, prod, add=False)
            lora_backward(dx, da, db, dout, x, u, a, b, 2.0, du, t_in)
        return dense, nf4

    fns = {t: pair(*d) for t, d in shapes.items()}
    for dense, nf4 in fns.values():  # compile and warm up
        dense()
        nf4()
    best = {t: [float("inf"), float("inf")] for t in fns}
    for _ in range(repeats):  # alternating, so a busy machine slows both alike
        for t, (dense, nf4) in fns.items():
            best[t][0] = min(best[t][0], _best(dense, 1))
            best[t][1] = min(best[t][1], _best(nf4, 1))
    return {"shape": shape_name, "rows": N, "shapes": shapes, "seconds": best}


def qlora_vs_lora_steps(shape_name: str = "small", rank: int = 8, repeats: int = 10) -> dict:
    """Best seconds per training step of a LoRA session against the same QLoRA session (NF4 base, double quant)."""
    from simulator.config import LoraConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from simulator.data.corpus import builtin_corpus
    from simulator.data.dataset import TextDataset
    from simulator.session import TrainingSession

    s = next(x for x in SHAPES if x.name == shape_name)
    data = TextDataset(builtin_corpus(), 0.1)
    sessions = {}
    for label, base in (("LoRA", "float"), ("QLoRA", "nf4")):
        lora = LoraConfig(rank=rank, alpha=2.0 * rank, base=base, double_quant=base == "nf4")
        model = ModelConfig(d_model=s.d, n_layer=s.L, n_head=s.H, seq_len=s.T, lora=lora)
        cfg = RunConfig(model=model, optim=OptimConfig(name="adamw"),
                        train=TrainConfig(batch_size=s.B, eval_every=0, stats_every=0))
        sessions[label] = TrainingSession(cfg, data)
        for _ in range(2):
            sessions[label].step()
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(repeats):
        for label, session in sessions.items():
            best[label] = min(best[label], _best(session.step, 1))
    return {"shape": shape_name, "seconds": best}


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


def main(argv=None) -> None:
    """`--threads N`: BLAS and numba on N threads (on a shared machine, 1 keeps threads from fighting for cores)."""
    import argparse
    from contextlib import nullcontext

    parser = argparse.ArgumentParser(prog="python -m simulator.bench.finetune")
    parser.add_argument("--threads", type=int, default=0, help="BLAS and numba threads (default: as they start)")
    args = parser.parse_args(argv)
    limit = nullcontext()
    if args.threads > 0:
        import numba
        from threadpoolctl import threadpool_limits
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        limit = threadpool_limits(args.threads)
    with limit:
        _report()


def _report() -> None:
    r = lora_vs_full()
    full, lora = r["seconds"].items()
    print(f"{r['shape']} shape: {full[0]} {1e3 * full[1]:.1f} ms/step ({r['trainable'][full[0]]:,} trainable), "
          f"{lora[0]} {1e3 * lora[1]:.1f} ms/step ({r['trainable'][lora[0]]:,} trainable): "
          f"{lora[1] / full[1]:.2f}x")
    q = qlora_vs_lora_linears()
    print(f"{q['shape']} shape, {q['rows']} rows: one adapted linear's forward + backward, float32 base vs NF4 base "
          "decoded tile by tile (double-quantized scales)")
    for t, (dense, nf4) in q["seconds"].items():
        d_in, d_out = q["shapes"][t]
        print(f"  {t:<5} {d_in:>4} x {d_out:<4} float32 {1e3 * dense:7.3f} ms, NF4 {1e3 * nf4:7.3f} ms: "
              f"{nf4 / dense:.2f}x")
    dense, nf4 = (sum(v[i] for v in q["seconds"].values()) for i in (0, 1))
    print(f"  all four: float32 {1e3 * dense:.3f} ms, NF4 {1e3 * nf4:.3f} ms: {nf4 / dense:.2f}x")
    st = qlora_vs_lora_steps()
    lo, ql = st["seconds"]["LoRA"], st["seconds"]["QLoRA"]
    print(f"{st['shape']} shape, a whole training step: LoRA {1e3 * lo:.1f} ms, QLoRA {1e3 * ql:.1f} ms: "
          f"{ql / lo:.2f}x")
    t = nf4_throughput()
    print(f"NF4 quantize {t['quantize']:.2f} GB/s, dequantize {t['dequantize']:.2f} GB/s; "
          f"float32 copy {t['copy']:.2f} GB/s (read + write)")


if __name__ == "__main__":
    main()
