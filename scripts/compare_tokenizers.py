"""Loss per character of the tiny-gpt preset with char, bpe and wordpiece tokens, at equal steps.

A loss per token covers chars_per_token characters on average, so over the validation text
    nats per character = (mean nats per token) * (tokens of val) / (characters of val)
                       = loss_per_token / chars_per_token(val).
Run: PYTHONPATH=. python scripts/compare_tokenizers.py [--steps 300] [--vocab 512] [--eval-batches 32]
"""

from __future__ import annotations

import argparse
import math
import time

from simulator.data import builtin_corpus
from simulator.data.bpe import BPETokenizer
from simulator.data.wordpiece import WordPieceTokenizer
from simulator.presets import load_preset, override
from simulator.session import TrainingSession


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--eval-batches", type=int, default=32)
    p.add_argument("--tokenizers", default="char,bpe,wordpiece")
    args = p.parse_args()
    text = builtin_corpus()
    train_text = text[:len(text) - int(len(text) * 0.1)]
    for kind in ("bpe", "wordpiece"):
        t0 = time.perf_counter()
        (BPETokenizer if kind == "bpe" else WordPieceTokenizer).train(train_text, args.vocab)
        print(f"training {kind} to {args.vocab} tokens on {len(train_text):,} characters: "
              f"{time.perf_counter() - t0:.3f} s")
    print(f"{'tokenizer':<10} {'V':>5} {'chars/token':>11} {'val nats/token':>14} {'val nats/char':>13} "
          f"{'bits/char':>9} {'train s':>8}")
    for kind in args.tokenizers.split(","):
        cfg = override(load_preset("tiny-gpt"), **{"data.tokenizer": kind, "data.vocab_size": args.vocab,
                                                 "train.steps": args.steps, "train.eval_batches": args.eval_batches})
        s = TrainingSession(cfg)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            s.step()
        secs = time.perf_counter() - t0
        per_token = s.evaluate("val")
        cpt = s.dataset.chars_per_token("val")
        per_char = per_token / cpt
        print(f"{kind:<10} {s.tokenizer.vocab_size:>5} {cpt:>11.3f} {per_token:>14.4f} {per_char:>13.4f} "
              f"{per_char / math.log(2):>9.4f} {secs:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
