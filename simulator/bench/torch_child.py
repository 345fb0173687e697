"""The bench's PyTorch reference: the same pre-LN GPT training step in PyTorch eager, run as a child process.

This file imports only torch and the standard library, never the engine: it runs as
`python torch_child.py V d L H T B repeats [cpu|cuda]` in the environment a torch user has (the bench hands it the
user's original environment, not the one the engine set for itself) and prints one JSON line:
the median seconds per step and what torch ran with.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F


class _Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class _GPT(nn.Module):
    def __init__(self, V: int, d: int, L: int, H: int, T: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, d), nn.Embedding(T, d)
        self.blocks = nn.ModuleList(_Block(d, H) for _ in range(L))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for b in self.blocks:
            x = b(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def torch_step_seconds(V: int, d: int, L: int, H: int, T: int, B: int, repeats: int, device: str = "cpu") -> float:
    """Median seconds of forward + backward + clip + AdamW, with torch's own thread settings (on a GPU: the
    device drained after each step, so a step's time is its kernels', not their launch)."""
    torch.manual_seed(0)
    model = _GPT(V, d, L, H, T).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    ids = torch.randint(0, V, (B, T), device=device)
    targets = torch.randint(0, V, (B, T), device=device)
    drain = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        drain()

    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB: Linux's VmHWM (the peak of this program's memory; the
    rusage peak would start at the parent's, which a forked child inherits), else the rusage peak (macOS reports
    bytes, others KB).
    The engine's memory child measures its own the same way (simulator/bench/memory_child.py, not imported
    here: nothing of the engine is)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str]) -> None:
    """Prints {"seconds", "torch", "threads", "env", "start_mb", "peak_mb"} as one JSON line for the shape given as
    arguments: the median step, what torch ran with, and the peak resident memory after torch's import and after
    the model's steps."""
    V, d, L, H, T, B, repeats = (int(a) for a in argv[:7])
    device = argv[7] if len(argv) > 7 else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch sees no CUDA device")
    start = peak_rss_mb()
    seconds = torch_step_seconds(V, d, L, H, T, B, repeats, device)
    env = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "OPENBLAS_", "MKL_", "KMP_"))}
    print(json.dumps({"seconds": seconds, "torch": torch.__version__, "threads": torch.get_num_threads(), "env": env,
                      "start_mb": start, "peak_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv[1:])
