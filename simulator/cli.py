"""The headless command line: train, check, presets, sample, memory, bench, explain, lesson. `python main.py` with no
command opens the app.

Exit status: 0 done, 2 a person's mistake (bad preset, path, value, a run folder in use), 3 the run diverged,
130 / 143 / 129 stopped by SIGINT / SIGTERM / SIGHUP (after saving a checkpoint). `lesson NAME`: 0 when every
claim of the card holds, 1 when one does not (a finding about the run, not an error).
"""

from __future__ import annotations

import argparse
import math
import re
import sys

from simulator import i18n
from simulator.i18n import N_, _

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
LARGEST = 1e150  # explain's inputs: their squares (and sums of them) stay finite in float64


class UsageError(Exception):
    """A person's mistake on the command line (one sentence)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong, and where the help is."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse takes "-1e308" for an option (its own pattern knows only -12 and -1.5): numbers are values
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str):
        print(_("error: {message} (see `{prog} --help`)").format(message=message, prog=self.prog), file=sys.stderr)
        sys.exit(EXIT_USAGE)


# argparse's own words (usage, section titles, its error sentences) go through our catalogs too: argparse
# looks them up with the gettext name `_` of its module, so pointing that at ours translates them.
_ARGPARSE_WORDS = (
    N_("usage: "), N_("positional arguments"), N_("options"), N_("show this help message and exit"),
    N_("the following arguments are required: %s"), N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"), N_("argument %(argument_name)s: %(message)s"),
    N_("invalid %(type)s value: %(value)r"), N_("expected one argument"),
)
argparse._ = _

LANG_CODES = tuple(i18n.LANGUAGES)


def _take_lang(argv: list[str]) -> list[str]:
    """Applies `--lang CODE` (anywhere on the line, before the parser's words are translated); the rest of argv.

    Without it the language is the system's (TRANSFORMER_SIM_LANG, then the locale)."""
    rest, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--lang" or arg.startswith("--lang="):
            code = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in arg else 2
            if code not in LANG_CODES:
                i18n.set_language(None)
                raise UsageError(_("--lang: {code!r} is not one of {choices}").format(
                    code=code, choices=", ".join(LANG_CODES)))
            i18n.set_language(code)
            continue
        rest.append(arg)
        i += 1
    return rest


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="transformer-sim", description=_("Train a small transformer and watch it learn."))
    p.add_argument("--preset", help=_("open the app on this preset (a name from `presets` or a YAML file)"))
    p.add_argument("--lang", choices=LANG_CODES,
                   help=_("the language of every message: en or zh_CN (default: TRANSFORMER_SIM_LANG, then the "
                          "system locale)"))
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help=_("train headless and write a run folder"))
    t.add_argument("--preset", help=_("a preset name or YAML file (default: tiny-gpt)"))
    t.add_argument("--resume", metavar="RUN_DIR", help=_("continue the run in this folder (its checkpoint.npz)"))
    t.add_argument("--steps", type=int, help=_("steps to run (with --resume: further steps)"))
    t.add_argument("--seed", type=int, help=_("override train.seed"))
    t.add_argument("--runs", default="runs", help=_("folder for new run folders (default: runs)"))
    t.add_argument("--quiet", action="store_true", help=_("no progress bar"))
    t.add_argument("--backend", choices=("cpu", "cuda", "auto"),
                   help=_("override train.backend (with --resume: where the run continues; checkpoints fit both)"))
    t.add_argument("--accept-checkpoint-config", action="store_true",
                   help=_("with --resume: rewrite the folder's config.yaml from the checkpoint when they disagree"))

    c = sub.add_parser("check", help=_("validate a preset and say what is wrong"))
    c.add_argument("file")

    sub.add_parser("presets", help=_("list the shipped presets"))

    s = sub.add_parser("sample", help=_("generate text from a checkpoint"))
    s.add_argument("--checkpoint", required=True, metavar="RUN_DIR")
    s.add_argument("--prompt")
    s.add_argument("--temperature", type=float)
    s.add_argument("--top-k", type=int)
    s.add_argument("--top-p", type=float)
    s.add_argument("--min-p", type=float)
    s.add_argument("--greedy", action="store_true")
    s.add_argument("--max-new", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--explain", action="store_true", help=_("print the per-token distribution table"))

    mem = sub.add_parser("memory", help=_("the memory bill: bytes by formula next to a built session's, and "
                                          "what-ifs"))
    mem.add_argument("preset", nargs="?", help=_("a GPT preset name or YAML file"))
    mem.add_argument("--what-if", type=str.lower, choices=("7b", "13b", "70b"),
                     help=_("a Llama-style model too large to run: parameters, training bytes, activations"))
    mem.add_argument("--batch", type=int, help=_("with --what-if: the batch of the activations (default 1)"))
    mem.add_argument("--seq", type=int, help=_("with --what-if: the sequence length of the activations "
                                               "(default 2048)"))

    b = sub.add_parser("bench", help=_("print speed tables (numbers, not pass/fail)"))
    b.add_argument("--quick", action="store_true", help=_("fewer repetitions and no medium preset"))
    b.add_argument("--ui", action="store_true", help=_("measure the window's responsiveness while training"))
    b.add_argument("--backend", choices=("cpu", "cuda"), default="cpu",
                   help=_("cuda: the step and long-sequence attention on the GPU (or in numba-cuda's simulator with "
                          "NUMBA_ENABLE_CUDASIM=1, at toy shapes)"))

    les = sub.add_parser("lesson", help=_("list the lesson cards, or run one headless and check its claims"))
    les.add_argument("name", nargs="?", help=_("a preset with a lesson card (see the list without a name)"))
    les.add_argument("--seed", type=int, help=_("run at this seed instead of the card's own"))
    les.add_argument("--course", action="store_true", help=_("list the cards in the course's order"))

    e = sub.add_parser("explain", help=_("worked examples: z-scores, BatchNorm vs LayerNorm, one MLP step"))
    ex = e.add_subparsers(dest="example", required=True)
    z = ex.add_parser("zscore", help=_("mean, variance, std and z-scores of some numbers"))
    z.add_argument("values", type=float, nargs="+", metavar="VALUE")
    n = ex.add_parser("norms", help=_("a grades table normalized by BatchNorm (columns) and LayerNorm (rows)"))
    n.add_argument("rows", nargs="*", metavar="ROW", help=_("comma-separated numbers, one student per row "
                                                            "(default: 90,80,70 60,50,40)"))
    m = ex.add_parser("mlp", help=_("the leaf/flower MLP: one weight update, number by number"))
    m.add_argument("--loss", choices=("cross_entropy", "l1"), default="cross_entropy")
    m.add_argument("--lr", type=float, default=0.5)
    d = ex.add_parser("deep", help=_("run a deep-MLP lesson preset and print its per-layer gradient norms"))
    d.add_argument("preset", help=_("a deep_mlp preset, e.g. deep-sigmoid"))
    d.add_argument("--steps", type=int, help=_("steps to run (default: the preset's)"))
    return p


def main(argv: list[str] | None = None, launch_app=None, ui_bench=None) -> int:
    """Runs one command; returns the exit status.

    The engine never imports the UI: the launcher (main.py) passes `launch_app(preset) -> int`
    and `ui_bench() -> int` in. `--lang` holds for this one command: a caller in the same process (a test,
    a script) gets its own language back afterwards.
    """
    before = i18n.language()
    try:
        return _run(argv, launch_app, ui_bench)
    finally:
        if i18n.language() != before:
            i18n.set_language(before)


def _run(argv, launch_app, ui_bench) -> int:
    try:

        argv = _take_lang(list(sys.argv[1:] if argv is None else argv))
    except UsageError as e:
        print(_("error: {message}").format(message=e), file=sys.stderr)
        return EXIT_USAGE
    args = _parser().parse_args(argv)
    from simulator.checkpoint import CheckpointError
    from simulator.data import DataError
    from simulator.lessons.worked_examples import ExplainError
    from simulator.presets import PresetError
    from simulator.runfolder import RunFolderError
    from simulator.sampling import SamplingError
    from simulator.session import SessionError
    try:
        if args.command is None:
            if launch_app is None:
                raise UsageError(_("no command given; see `transformer-sim --help`"))
            return launch_app(args.preset)
        if args.command == "bench" and args.ui:
            if ui_bench is None:
                raise UsageError(_("the window benchmark needs the desktop app"))
            return ui_bench()
        return {"train": _train, "check": _check, "presets": _presets, "sample": _sample,
                "memory": _memory, "bench": _bench, "explain": _explain,
                "lesson": _lesson}[args.command](args)
    except (UsageError, PresetError, DataError, CheckpointError, SamplingError, SessionError, ExplainError,
            RunFolderError) as e:
        print(_("error: {message}").format(message=e), file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # the file system said no: a read-only folder, a full disk, a file where a folder goes
        where = f"{e.filename}: " if e.filename else ""
        print(_("error: {message}").format(message=f"{where}{e.strerror or e}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C while kernels compile or data loads: nothing was written yet
        print(_("interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED


def _check(args) -> int:
    from pathlib import Path

    from simulator.presets import load_any
    if Path(args.file).name == "course.yaml":  # the lesson cards' order, not a preset
        from simulator.lessons.cards_course import load_course
        course = load_course(args.file)
        print(_("{file}: ok (a course of {cards} cards in {sections} sections)").format(
            file=args.file, cards=len(course.cards), sections=len(course.sections)))
        return 0
    cfg = load_any(args.file)
    print(_("{file}: ok ({name})").format(file=args.file, name=getattr(cfg, "name", "")))
    return 0


def _presets(args) -> int:
    from simulator.presets import list_presets
    infos = list_presets()
    width = max(len(i.name) for i in infos)
    for i in infos:
        print(f"{i.name:<{width}}  {i.description}")

    return 0


def _train(args) -> int:
    from simulator.train import train_command
    return train_command(args)


def _sample(args) -> int:
    from dataclasses import replace

    from simulator.checkpoint import load_checkpoint
    from simulator.sampling import explain_table, generate, validate_sampling
    # a copied run folder samples without its text; generation runs on the CPU whatever backend trained it
    session = load_checkpoint(args.checkpoint, need_data=False, backend="cpu")
    cfg = session.config.sampling
    given = {"prompt": args.prompt, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
             "min_p": args.min_p, "max_new": args.max_new, "seed": args.seed}
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    if args.greedy:
        cfg = replace(cfg, greedy=True)
    validate_sampling(cfg)
    print(cfg.prompt, end="", flush=True)  # the text streams out token by token; the events stay only if asked
    made = []
    try:
        _text, events = generate(session.next_logits, session.tokenizer, cfg, keep_events=args.explain,
                             on_token=lambda e: (made.append(1), print(e.char, end="", flush=True)))
    except KeyboardInterrupt:
        print("\n" + _("interrupted after {n} tokens").format(n=len(made)), file=sys.stderr)
        return EXIT_INTERRUPTED
    print()
    if args.explain:
        print(explain_table(events, session.tokenizer))
    return 0


def _explain(args) -> int:
    from simulator.lessons import deep_mlp, leaf_flower, load_lesson, worked_examples
    if args.example == "zscore":
        _finite_table([args.values])
        print(worked_examples.zscore_text(args.values))
    elif args.example == "norms":
        print(worked_examples.norms_text(_table(args.rows) if args.rows else worked_examples.GRADES))
    elif args.example == "mlp":
        if not args.lr > 0:
            raise UsageError(_("--lr must be greater than 0, got {value}").format(value=args.lr))
        print(leaf_flower.mlp_text(args.loss, args.lr))
    else:
        if args.steps is not None and args.steps < 1:
            raise UsageError(_("--steps must be at least 1, got {value}").format(value=args.steps))
        cfg = load_lesson(args.preset, deep_mlp.LESSON.kind)
        print(deep_mlp.summary(cfg, deep_mlp.run(cfg, args.steps)))
    return 0


def _lesson(args) -> int:
    """No name: the cards (in the course's order with --course); a name: run its card, exit 0 / 1 by its claims."""
    from simulator.lessons import cards, cards_course
    if args.name is None:
        if args.seed is not None:
            raise UsageError(_("--seed needs a card to run (python main.py lesson NAME --seed S)"))
        print(cards_course.course_text() if args.course else cards_course.cards_list_text())
        return 0
    if args.course:
        raise UsageError(_("--course lists the course; give it without a card name"))
    if args.seed is not None and args.seed < 0:
        raise UsageError(_("--seed must be at least 0, got {value}").format(value=args.seed))
    _cfg, card = cards.load_card(args.name)
    if card is None:
        raise UsageError(_("'{name}' has no lesson card (cards: {cards})").format(
            name=args.name, cards=", ".join(cards.card_names())))
    print(cards.card_text(card), flush=True)
    result = cards.run_card(card, args.seed)
    print("\n" + cards.result_text(result))
    return 0 if result.holds else 1


def _table(rows: list[str]) -> list[list[float]]:
    """ROW arguments ("90,80,70") -> a table of floats; a bad number is named."""
    out = []
    for i, row in enumerate(rows):
        try:
            out.append([float(v) for v in row.split(",")])
        except ValueError:
            raise UsageError(_("row {n} ({row!r}) is not a comma-separated list of numbers").format(
                n=i + 1, row=row)) from None
    if len({len(r) for r in out}) > 1:
        raise UsageError(_("every row needs the same number of values"))
    return _finite_table(out)


def _finite_table(rows: list[list[float]]) -> list[list[float]]:
    """Refuses NaN, Inf and numbers whose squares overflow: a worked example of those is a table of NaNs."""
    for row in rows:
        for v in row:
            if not math.isfinite(v):
                raise UsageError(_("{value} is not a finite number").format(value=v))
            if abs(v) > LARGEST:
                raise UsageError(_("{value:g} is too large: a variance squares it (use numbers up to "
                                   "{largest:g})").format(value=v, largest=LARGEST))
    return rows


def _memory(args) -> int:
    from simulator.lessons import lesson_of
    from simulator.memory_calc import whatif_report
    if args.preset is None and args.what_if is None:
        raise UsageError(_("memory needs a GPT preset, --what-if 7b | 13b | 70b, or both"))
    if args.what_if is None and (args.batch is not None or args.seq is not None):
        raise UsageError(_("--batch and --seq size the --what-if calculator's activations: give --what-if too"))
    for flag, value in (("--batch", args.batch), ("--seq", args.seq)):
        if value is not None and value < 1:
            raise UsageError(_("{flag} must be at least 1, got {value}").format(flag=flag, value=value))
    parts = []
    if args.preset is not None:
        from simulator.data import load_dataset
        from simulator.memory import preset_report
        from simulator.presets import load_any
        cfg = load_any(args.preset, fit_memory=False)  # a model too large to build is still billed
        lesson = lesson_of(cfg)
        if lesson is not None:
            raise UsageError(_("'{preset}' is a lesson preset (kind: {kind}): it has no GPT to bill "
                               "(use a GPT preset, e.g. tiny-gpt)").format(preset=args.preset, kind=lesson.kind))

        parts.append(preset_report(cfg, load_dataset(cfg.data)))
    if args.what_if is not None:
        parts.append(whatif_report(args.what_if, batch=args.batch or 1, seq=args.seq or 2048))
    print("\n\n".join(parts))
    return 0


def _bench(args) -> int:
    if args.backend == "cuda":
        from simulator.bench.cuda import run_cuda_bench
        return run_cuda_bench(quick=args.quick)
    from simulator.bench.step import run_bench
    run_bench(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())


