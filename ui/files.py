"""File actions of the window: presets, checkpoints, plot and metrics exports.

`FileActions(app)` asks for paths (the `*_dialog` methods) and acts on them; `ui.app.App` holds one as
`app.files`. A file that cannot be read or written is one dialog; the run is never touched by a failed
file action.
"""

from __future__ import annotations

from tkinter import filedialog

from simulator.lessons import lesson_of
from simulator.presets import PresetError, dump_config, load_any
from ui.protocol import LoadCheckpoint, Rebuild, SaveCheckpoint


class FileActions:
    """Open, save and export for the window of `app` (a `ui.app.App`)."""

    def __init__(self, app):
        self.app = app

    def open_preset_dialog(self) -> None:
        """File > Open preset…"""
        path = filedialog.askopenfilename(parent=self.app.root, title="Open a preset",
                                          filetypes=[("YAML presets", "*.yaml *.yml"), ("All files", "*")])
        if path:
            self.open_preset(path)

    def open_preset(self, path: str) -> bool:
        """Loads a preset file: a GPT preset starts a new run, a race preset opens the race tab."""
        try:
            cfg = load_any(path)
        except PresetError as err:
            self.app.show_error(str(err))
            return False
        except OSError as err:
            self.app.show_error(f"{path}: cannot be read ({err.strerror or err}).")
            return False
        if lesson_of(cfg) is not None:  # a lesson beside the GPT opens in its own tab
            return self.show_lesson(cfg)
        app = self.app
        if app.step_count > 0 and not app.ask("Open preset", f"Open '{cfg.name}' and discard the current run "
                                              f"({app.step_count} steps)?"):
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
            self.app.show_error(f"{cfg.name}: presets of this kind have no view in the window yet.")
            return False
        tab.load(cfg)
        layout.select_tab(tab)
        return True

    def save_preset_dialog(self) -> None:
        """File > Save preset as…"""
        path = filedialog.asksaveasfilename(parent=self.app.root, title="Save the preset as", defaultextension=".yaml",
                                            initialfile=f"{self.app.config.name}.yaml",
                                            filetypes=[("YAML presets", "*.yaml")])
        if path:
            self.save_preset(path)

    def save_preset(self, path: str) -> None:
        """Writes the current settings as a preset file."""
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(dump_config(self.app.config))
        except OSError as err:
            self.app.show_error(f"{path}: cannot be written ({err.strerror or err}).")
            return
        self.app.set_status(f"saved the preset to {path}")

    def save_checkpoint_dialog(self) -> None:
        """File > Save checkpoint…"""
        path = filedialog.asksaveasfilename(parent=self.app.root, title="Save a checkpoint", defaultextension=".npz",
                                            initialfile="checkpoint.npz", filetypes=[("Checkpoints", "*.npz")])
        if path:
            self.app.worker.send(SaveCheckpoint(path))

    def load_checkpoint_dialog(self) -> None:
        """File > Load checkpoint…"""
        path = filedialog.askopenfilename(parent=self.app.root, title="Load a checkpoint",
                                          filetypes=[("Checkpoints", "*.npz"), ("All files", "*")])
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str) -> None:
        """Replaces the run by a saved one (its settings come with it)."""
        self.app.worker.send(LoadCheckpoint(path))

    def export_plot_dialog(self) -> None:
        """File > Export current plot…"""
        tab = self.app.layout.current_tab()
        path = filedialog.asksaveasfilename(parent=self.app.root, title="Export the plot", defaultextension=".png",
                                            initialfile=f"{tab.title.lower().replace(' ', '-')}.png",
                                            filetypes=[("PNG image", "*.png"), ("SVG drawing", "*.svg")])
        if path:
            self.export_plot(path)

    def export_plot(self, path: str) -> None:
        """Writes the visible tab's figure (PNG or SVG by suffix)."""
        try:
            self.app.layout.current_tab().export(path)
        except (OSError, ValueError) as err:
            self.app.show_error(f"{path}: the plot cannot be written ({err}).")
            return
        self.app.set_status(f"exported the plot to {path}")

    def export_csv_dialog(self) -> None:
        """File > Export metrics CSV…"""
        path = filedialog.asksaveasfilename(parent=self.app.root, title="Export metrics", defaultextension=".csv",
                                            initialfile="metrics.csv", filetypes=[("CSV", "*.csv")])
        if path:
            self.export_csv(path)

    def export_csv(self, path: str) -> None:
        """Writes the run's step metrics as CSV."""
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.app.history.csv())
        except OSError as err:
            self.app.show_error(f"{path}: cannot be written ({err.strerror or err}).")
            return
        self.app.set_status(f"exported the metrics to {path}")
