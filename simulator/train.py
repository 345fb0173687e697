"""`train`: the headless loop — progress bar, run folder (config.yaml, metrics.csv, checkpoint.npz), resume."""

from __future__ import annotations

import csv
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from simulator.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from simulator.kernels import kernels_cached
from simulator.lessons import Lesson, lesson_of
from simulator.presets import dump_config, find_preset, load_any, override
from simulator.session import TrainingSession

METRICS = ["step", "loss", "val_loss", "lr", "grad_norm", "clipped", "tokens_per_s", "wall_time"]


def new_run_dir(root: Path, name: str) -> Path:
    """runs/<preset>-<timestamp>, made unique if two runs start within a second."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{name}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def _last_wall_time(metrics: Path) -> float:
    rows = list(csv.DictReader(metrics.open())) if metrics.exists() else []
    return float(rows[-1]["wall_time"]) if rows else 0.0


def train_command(args) -> int:
    """Trains a preset (or resumes a run folder) for the asked steps; returns the exit status."""
    if args.resume:
        run_dir = Path(args.resume)
        read_checkpoint(run_dir)  # a clear message before anything else if it is not readable
        session = load_checkpoint(run_dir)
        if args.seed is not None:
            print("note: --seed is ignored when resuming (the run keeps its random streams)", file=sys.stderr)
        steps = args.steps if args.steps is not None else max(session.config.train.steps - session.step_count, 0)
        wall0 = _last_wall_time(run_dir / "metrics.csv")
    else:
        path = find_preset(args.preset)
        cfg = load_any(path)
        lesson = lesson_of(cfg)
        if lesson is not None:  # a lesson beside the GPT: run it and print its summary
            return _lesson_command(lesson, cfg, args.steps)
        overrides = {k: v for k, v in {"train.steps": args.steps, "train.seed": args.seed}.items() if v is not None}
        if overrides:
            cfg = override(cfg, flag_names={"train.steps": "--steps", "train.seed": "--seed"}, **overrides)
        if not kernels_cached():
            print("compiling kernels for the first run (cached for the next ones)...", file=sys.stderr, flush=True)
        session = TrainingSession(cfg)
        run_dir = new_run_dir(Path(args.runs), cfg.name)
        (run_dir / "config.yaml").write_text(dump_config(session.config))
        steps, wall0 = cfg.train.steps, 0.0
    return _loop(session, run_dir, steps, wall0, quiet=args.quiet)


def _loop(session: TrainingSession, run_dir: Path, steps: int, wall0: float, quiet: bool) -> int:
    metrics_path = run_dir / "metrics.csv"
    new_file = not metrics_path.exists()
    every = session.config.train.checkpoint_every
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))  # finish the step, then stop
    start, rec = time.perf_counter(), None
    try:
        with metrics_path.open("a", newline="") as f, tqdm(total=steps, disable=quiet, unit="step",
                                                           dynamic_ncols=True, file=sys.stderr) as bar:
            out = csv.writer(f)
            if new_file:
                out.writerow(METRICS)
            for _ in range(steps):
                rec = session.step()
                if rec.nonfinite is not None:
                    bar.close()
                    save_checkpoint(run_dir, session)  # the last good state: the bad update was never applied
                    print(f"error: {rec.nonfinite.sentence()}; checkpoint of step {session.step_count} "
                          f"saved in {run_dir}", file=sys.stderr)
                    return 3
                wall = wall0 + time.perf_counter() - start
                out.writerow([rec.step, f"{rec.loss:.6f}", "" if rec.val_loss is None else f"{rec.val_loss:.6f}",
                              f"{rec.lr:.6g}", f"{rec.grad_norm:.6g}", int(rec.clipped),
                              f"{rec.tokens_per_second:.1f}", f"{wall:.3f}"])
                bar.set_postfix_str(f"loss {rec.loss:.4f}  {rec.tokens_per_second:,.0f} tok/s", refresh=False)
                bar.update(1)
                if every and session.step_count % every == 0:
                    f.flush()
                    save_checkpoint(run_dir, session)
                if interrupted:
                    break
        save_checkpoint(run_dir, session)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        print(f"interrupted at step {session.step_count}; checkpoint saved in {run_dir}", file=sys.stderr)
        return 130
    _summary(session, run_dir, rec)
    return 0


def _summary(session: TrainingSession, run_dir: Path, rec) -> None:
    val = session.evaluate()
    h = session.dataset.unigram_entropy()
    last = f"train loss {rec.loss:.4f}, " if rec is not None else ""
    print(f"step {session.step_count}: {last}validation loss {val:.4f} "
          f"(unigram entropy of the data {h:.4f} nats)\nrun folder: {run_dir}")


def _lesson_command(lesson: Lesson, cfg, steps: int | None) -> int:
    """Runs a lesson headless for `steps` (default: its config's) and prints its summary."""
    print(lesson.summary(cfg, lesson.run(cfg, steps, lambda: False)))
    return 0
