"""transformer-sim: `python main.py` opens the desktop lab; `python main.py COMMAND` runs headless."""

import sys

from simulator.cli import main as cli_main


def launch_app(preset):
    """Opens the desktop lab (Tk is needed only here, never by the engine)."""
    try:
        from ui.app import launch
    except ImportError as e:
        from simulator.i18n import _
        print(_("error: {message}").format(message=_("the desktop app cannot start ({why}); the headless commands "
                                                     "still work: see `transformer-sim --help`").format(why=e)),
              file=sys.stderr)
        return 2
    return launch(preset)


def ui_bench():
    """Measures the window's responsiveness while it trains."""
    from ui.bench import main as bench
    return bench()


def main(argv=None) -> int:
    """The `transformer-sim` command and `python main.py`."""
    return cli_main(argv, launch_app=launch_app, ui_bench=ui_bench)


def main_exit() -> None:
    """Entry point of the installed `transformer-sim` command."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
