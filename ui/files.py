"""File actions of the window: presets, checkpoints, plot and metrics exports.

`FileActions(app)` asks for paths (the `*_dialog` methods) and acts on them; `ui.app.App` holds one as
`app.files`. A file that cannot be read or written is one dialog; the run is never touched by a failed
file action.
"""

from __future__ import annotations

from tkinter import filedialog

from simulator.i18n import N_, _
from simulator.lessons import lesson_of
from simulator.presets import PresetError, dump_config, load_any
from ui.protocol import LoadCheckpoint, Rebuild, SaveCheckpoint
from ui.relabel import Msg


class FileActions:
    """Open, save and export for the window of `app` (a `ui.app.App`)."""

    def __init__(self, app):
        self.app = app

    def open_preset_dialog(self) -> None:
        """File > Open preset…"""
        path = filedialog.askopenfilename(parent=self.app.root, title=_("Open a preset"),
                                          filetypes=[(_("YAML presets"), "*.yaml *.yml"), (_("All files"), "*")])
        if path:
            self.open_preset(path)

    def open_preset(self, path: str) -> bool:
        """Loads a preset file: a GPT preset starts a new run, a race preset opens the race tab."""
        try:
            cfg = load_any(path)
        except PresetError as err:
            self.app.show_error(_(str(err).strip()))
            return False
        except OSError as err:
            self.app.show_error(_("{path}: cannot be read ({reason}).").format(path=path, reason=err.strerror or err))
            return False
        if lesson_of(cfg) is not None:  # a lesson beside the GPT opens in its own tab
            return self.show_lesson(cfg)
        app = self.app
        if app.step_count > 0 and not app.ask(_("Open preset"), _("Open '{name}' and discard the current run ({steps} "
                                                                  "steps)?").format(name=cfg.name,
                                                                          steps=app.step_count)):
            return False
        app.preset_path = path
        app.set_config(cfg)
        app.worker.send(Rebuild(cfg))
        return True

    def show_lesson(self, cfg) -> bool:
        """Shows a lesson's preset (a race, a sparse lesson, ...) in that lesson's tab; the run is untouched."""
        layout = self.app.layout
        lesson = lesson_of(cfg)
        tab = layout.lesson_tabs.get(lesson.kind) if lesson is not None else None
        if tab is None:
            self.app.show_error(_("{name}: presets of this kind have no view in the window yet.").format(name=cfg.name))
            return False
        tab.load(cfg)
        layout.select_tab(tab)
        return True

    def save_preset_dialog(self) -> None:
        """File > Save preset as…"""
        path = filedialog.asksaveasfilename(parent=self.app.root, title=_("Save the preset as"),
                                            defaultextension=".yaml", initialfile=f"{self.app.config.name}.yaml",
                                            filetypes=[(_("YAML presets"), "*.yaml")])
        if path:
            self.save_preset(path)

    def save_preset(self, path: str) -> None:
        """Writes the current settings as a preset file."""
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(dump_config(self.app.config))
        except OSError as err:
            self.app.show_error(_("{path}: cannot be written ({reason}).").format(path=path,
                                                                                  reason=err.strerror or err))
            return
        self.app.set_status(Msg(N_("saved the preset to {path}"), path=path))

    def save_checkpoint_dialog(self) -> None:
        """File > Save checkpoint…"""
        path = filedialog.asksaveasfilename(parent=self.app.root, title=_("Save a checkpoint"),
                                            defaultextension=".npz", initialfile="checkpoint.npz",
                                            filetypes=[(_("Checkpoints"), "*.npz")])
        if path:
            self.app.worker.send(SaveCheckpoint(path))

    def load_checkpoint_dialog(self) -> None:
        """File > Load checkpoint…"""
        path = filedialog.askopenfilename(parent=self.app.root, title=_("Load a checkpoint"),
                                          filetypes=[(_("Checkpoints"), "*.npz"), (_("All files"), "*")])
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str) -> None:
        """Replaces the run by a saved one (its settings come with it)."""
        self.app.worker.send(LoadCheckpoint(path))

    def export_plot_dialog(self) -> None:
        """File > Export current plot…"""
        tab = self.app.layout.current_tab()
        path = filedialog.asksaveasfilename(parent=self.app.root, title=_("Export the plot"),
                                            defaultextension=".png",
                                            initialfile=f"{tab.title.lower().replace(' ', '-')}.png",
                                            filetypes=[(_("PNG image"), "*.png"), (_("SVG drawing"), "*.svg")])
        if path:
            self.export_plot(path)

    def export_plot(self, path: str) -> None:
        """Writes the visible tab's figure (PNG or SVG by suffix)."""
        try:
            self.app.layout.current_tab().export(path)
        except (OSError,
                ValueError) as err:
            self.app.show_error(_("{path}: the plot cannot be written ({reason}).").format(path=path,
                                                                                          reason=_(str(err))))
            return
        self.app.set_status(Msg(N_("exported the plot to {path}"), path=path))

    def export_csv_dialog(self) -> None:
        """File > Export metrics CSV…"""
        path = filedialog.asksaveasfilename(parent=self.app.root, title=_("Export metrics"),
                                            defaultextension=".csv", initialfile="metrics.csv",
                                            filetypes=[("CSV", "*.csv")])
        if path:
            self.export_csv(path)

    def export_csv(self, path: str) -> None:
        """Writes the run's step metrics as CSV."""
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.app.history.csv())
        except OSError as err:
            self.app.show_error(_("{path}: cannot be written ({reason}).").format(path=path,
                                                                                  reason=err.strerror or err))
            return
        self.app.set_status(Msg(N_("exported the metrics to {path}"), path=path))
