"""`train`: the headless loop — progress bar, run folder (config.yaml, metrics.csv, checkpoint.npz), resume."""

from __future__ import annotations

import csv
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from simulator.checkpoint import load_checkpoint, read_checkpoint
from simulator.checkpoint import save_checkpoint as _save_checkpoint
from simulator.config import changed_paths
from simulator.i18n import _
from simulator.kernels import kernels_cached
from simulator.lessons import Lesson, lesson_of
from simulator.presets import (
    DEFAULT_PRESET,
    PresetError,
    dump_config,
    find_preset,
    load_any,
    override,
    parse_preset_text,
)
from simulator.runfolder import (
    RunFolderError,
    RunLock,
    new_run_dir,
    reconcile_metrics,
    remove_stale_temps,
    write_atomically,
)
from simulator.session import TrainingSession

METRICS = ["step", "loss", "val_loss", "lr", "grad_norm", "clipped", "tokens_per_s", "wall_time"]


def save_checkpoint(run_dir: Path, session: TrainingSession) -> None:
    """Saves, turning a file-system error into one sentence; the previous checkpoint stays intact either way."""
    try:
        _save_checkpoint(run_dir, session)
    except OSError as e:
        raise RunFolderError(_("the checkpoint of step {step} could not be written in {folder} ({reason}); "
                               "the previous checkpoint is intact").format(
            step=session.step_count, folder=run_dir, reason=e.strerror or e)) from None


def train_command(args) -> int:
    """Trains a preset (or resumes a run folder) for the asked steps; returns the exit status."""
    if args.steps is not None and args.steps < 1:
        raise RunFolderError(_("--steps: must be at least 1, got {steps}").format(steps=args.steps))
    if args.resume and args.preset is not None:
        raise RunFolderError(_("give --preset (a new run) or --resume (an existing one), not both: a resumed run "
                               "keeps the preset it was started with"))
    if args.resume:
        run_dir = Path(args.resume)
        run_dir = run_dir.parent if run_dir.is_file() else run_dir  # RUN/checkpoint.npz names its folder
        lock = RunLock(run_dir).acquire() if run_dir.is_dir() else None
        try:
            read_checkpoint(run_dir)  # a clear message before anything else if it is not readable
            session = load_checkpoint(run_dir, backend=getattr(args, "backend", None))
            _agree_with_checkpoint(run_dir, session, accept=getattr(args, "accept_checkpoint_config", False))
            _say_backend(session, args.quiet)
            if args.seed is not None:
                print(_("note: --seed is ignored when resuming (the run keeps its random streams)"), file=sys.stderr)
            remove_stale_temps(run_dir)
            steps = args.steps if args.steps is not None else max(session.config.train.steps - session.step_count, 0)
            if session.early_stop is not None and args.steps is None:
                # an early stop is where the run finished: nothing is left to train unless asked for more
                print(_("{stop}; the run is finished (--steps N trains on from these weights, with new patience)")
                      .format(stop=session.early_stop.sentence()), file=sys.stderr)
                steps = 0
            wall0 = reconcile_metrics(run_dir / "metrics.csv", session.step_count)
            return _loop(session, run_dir, steps, wall0, quiet=args.quiet)
        finally:
            if lock is not None:
                lock.release()
    path = find_preset(args.preset or DEFAULT_PRESET)
    cfg = load_any(path)
    lesson = lesson_of(cfg)
    if lesson is not None:  # a lesson beside the GPT: run it and print its summary
        if args.seed is not None:
            print(_("note: --seed is ignored by lesson presets (their seeds are in the preset)"), file=sys.stderr)
        return _lesson_command(lesson, cfg, args.steps)
    overrides = {k: v for k, v in {"train.steps": args.steps, "train.seed": args.seed,
                                   "train.backend": getattr(args, "backend", None)}.items() if v is not None}
    if overrides:
        cfg = override(cfg, flag_names={"train.steps": "--steps", "train.seed": "--seed",
                                        "train.backend": "--backend"}, **overrides)
    if not kernels_cached():
        print(_("compiling kernels for the first run (cached for the next ones)..."), file=sys.stderr, flush=True)
    session = TrainingSession(cfg)
    _say_backend(session, args.quiet)
    run_dir = new_run_dir(Path(args.runs), cfg.name, "config.yaml", dump_config(session.config))
    lock = RunLock(run_dir).acquire()
    try:
        return _loop(session, run_dir, cfg.train.steps, 0.0, quiet=args.quiet)
    finally:
        lock.release()


def _agree_with_checkpoint(run_dir: Path, session: TrainingSession, accept: bool) -> None:
    """The checkpoint's config is the run's truth: the folder's config.yaml must say the same, or be rewritten."""
    path, truth = run_dir / "config.yaml", dump_config(session.config)
    if not path.exists() or accept:
        write_atomically(path, truth)
        return
    fix = _("pass --accept-checkpoint-config to rewrite it from the checkpoint")
    try:
        written = parse_preset_text(path.read_text(encoding="utf-8"), str(path), run_dir)
    except (PresetError, OSError, UnicodeDecodeError) as e:
        raise RunFolderError(_("{path} does not load ({problem}); {fix}").format(
            path=path, problem=e, fix=fix)) from None

    written = replace(written, model=replace(written.model, vocab_size=session.config.model.vocab_size))
    # train.backend says where the run continues (--backend may change it), not what it is
    backend = written.train.backend
    written = replace(written, train=replace(written.train, backend=session.config.train.backend))
    differ = changed_paths(session.config, written)
    if differ:
        raise RunFolderError(_("{path} disagrees with the checkpoint at {key} ({written!r} vs the checkpoint's "
                               "{truth!r}); {fix}").format(path=path, key=differ[0], written=_value(written, differ[0]),
                                                           truth=_value(session.config, differ[0]), fix=fix))
    if backend != session.config.train.backend:
        write_atomically(path, truth)


def _backend_line(session: TrainingSession) -> str:
    return _("backend: {name} ({description})").format(name=session.backend_name,
                                                       description=session.backend_description)


def _say_backend(session: TrainingSession, quiet: bool) -> None:
    """Which backend runs, above the progress bar (the summary says it again on stdout)."""
    if not quiet:
        print(_backend_line(session), file=sys.stderr, flush=True)


def _value(cfg, path: str):
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


# how a stop request reaches the loop: it finishes the step, saves, and exits 128 + the signal's number
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
                     if s is not None)


def _loop(session: TrainingSession, run_dir: Path, steps: int, wall0: float, quiet: bool) -> int:
    metrics_path = run_dir / "metrics.csv"
    new_file = not metrics_path.exists()
    every = session.config.train.checkpoint_every
    interrupted: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: interrupted.append(signum)) for sig in STOP_SIGNALS}
    start, rec = time.perf_counter(), None
    try:
        with metrics_path.open("a", newline="") as f, tqdm(total=steps, disable=quiet, unit=_("step"),
                                                           dynamic_ncols=True, file=sys.stderr) as bar:
            out = csv.writer(f)
            if new_file:
                out.writerow(METRICS)
            for _i in range(steps):
                rec = session.step()
                if rec.nonfinite is not None:
                    bar.close()
                    f.flush()  # the metrics never fall behind the checkpoint (resume drops rows ahead of it)
                    save_checkpoint(run_dir, session)  # the last good state: the bad update was never applied
                    print(_("error: {problem}; checkpoint of step {step} saved in {folder}").format(
                        problem=rec.nonfinite.sentence(), step=session.step_count, folder=run_dir), file=sys.stderr)
                    return 3
                wall = wall0 + time.perf_counter() - start
                out.writerow([rec.step, f"{rec.loss:.6f}", "" if rec.val_loss is None else f"{rec.val_loss:.6f}",
                              f"{rec.lr:.6g}", f"{rec.grad_norm:.6g}", int(rec.clipped),
                              f"{rec.tokens_per_second:.1f}", f"{wall:.3f}"])
                bar.set_postfix_str(_("loss {loss:.4f}  {speed:,.0f} tok/s").format(
                    loss=rec.loss, speed=rec.tokens_per_second), refresh=False)
                bar.update(1)
                if rec.early_stop is not None:  # a normal finish: the checkpoint below keeps the (best) weights
                    break
                if every and session.step_count % every == 0:
                    f.flush()
                    save_checkpoint(run_dir, session)
                if interrupted:
                    break
        save_checkpoint(run_dir, session)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interrupted:
        print(_("interrupted at step {step}; checkpoint saved in {folder}").format(
            step=session.step_count, folder=run_dir), file=sys.stderr)
        return 128 + int(interrupted[0])
    if rec is not None and rec.early_stop is not None:
        print(rec.early_stop.sentence())
    _summary(session, run_dir, rec)
    return 0


def _summary(session: TrainingSession, run_dir: Path, rec) -> None:
    val = session.evaluate()
    h = session.dataset.unigram_entropy()
    summary = (_("step {step}: train loss {loss:.4f}, validation loss {val:.4f} (unigram entropy of the data "
                 "{entropy:.4f} nats)") if rec is not None else
               _("step {step}: validation loss {val:.4f} (unigram entropy of the data {entropy:.4f} nats)"))
    print(summary.format(step=session.step_count, loss=rec.loss if rec is not None else 0.0, val=val, entropy=h))
    print(_("run folder: {folder}").format(folder=run_dir))
    print(_backend_line(session))


def _lesson_command(lesson: Lesson, cfg, steps: int | None) -> int:
    """Runs a lesson headless for `steps` (default: its config's) and prints its summary."""
    frames = lesson.run(cfg, steps, lambda: False)
    print(lesson.summary(cfg, frames))
    failure = lesson.diverged(cfg, frames) if lesson.diverged is not None else None
    if failure is not None:
        print(_("error: {message}").format(message=failure), file=sys.stderr)

        return 3
    return 0
