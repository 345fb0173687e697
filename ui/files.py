"""File actions of the window: presets, checkpoints, plot and metrics exports.

`FileActions` is a part of `ui.app.App`. A file that cannot be read or written is one dialog;
the run is never touched by a failed file action.
"""

from __future__ import annotations

from tkinter import filedialog

from simulator.checkpoint import save_checkpoint
from simulator.config import RunConfig
from simulator.lessons import lesson_of
from simulator.presets import PresetError, dump_config, load_any


def save_in_worker(session, path):
    """Runs in the worker: writes a checkpoint, returns where."""
    return str(save_checkpoint(path, session))


class FileActions:
    """Open, save and export for `ui.app.App` (a mixin: `self` is the App)."""

    def open_preset_dialog(self) -> None:
        """File > Open preset…"""
        path = filedialog.askopenfilename(parent=self.root, title="Open a preset",
                                          filetypes=[("YAML presets", "*.yaml *.yml"), ("All files", "*")])
        if path:
            self.open_preset(path)

    def open_preset(self, path: str) -> bool:
        """Loads a preset file: a GPT preset starts a new run, a race preset opens the race tab."""
        try:
            cfg = load_any(path)
        except PresetError as err:
            self.show_error(str(err))
            return False
        except OSError as err:
            self.show_error(f"{path}: cannot be read ({err.strerror or err}).")
            return False
        if not isinstance(cfg, RunConfig):
            return self.show_lesson(cfg)
        if self.step_count > 0 and not self.ask("Open preset", f"Open '{cfg.name}' and discard the current run "
                                                f"({self.step_count} steps)?"):
            return False
        self.preset_path = path
        self.set_config(cfg)
        self.worker.send("rebuild", config=cfg)
        return True

    def show_lesson(self, cfg) -> bool:
        """Shows a lesson's preset (a race, a sparse lesson, ...) in that lesson's tab; the run is untouched."""
        lesson = lesson_of(cfg)
        tab = self.lesson_tabs.get(lesson.kind) if lesson is not None else None
        if tab is None:
            self.show_error(f"{cfg.name}: presets of this kind have no view in the window yet.")
            return False
        tab.load(cfg)
        self.select_tab(tab)
        return True

    def save_preset_dialog(self) -> None:
        """File > Save preset as…"""
        path = filedialog.asksaveasfilename(parent=self.root, title="Save the preset as", defaultextension=".yaml",
                                            initialfile=f"{self.config.name}.yaml",
                                            filetypes=[("YAML presets", "*.yaml")])
        if path:
            self.save_preset(path)

    def save_preset(self, path: str) -> None:
        """Writes the current settings as a preset file."""
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(dump_config(self.config))
        except OSError as err:
            self.show_error(f"{path}: cannot be written ({err.strerror or err}).")
            return
        self.set_status(f"saved the preset to {path}")

    def save_checkpoint_dialog(self) -> None:
        """File > Save checkpoint…"""
        path = filedialog.asksaveasfilename(parent=self.root, title="Save a checkpoint", defaultextension=".npz",
                                            initialfile="checkpoint.npz", filetypes=[("Checkpoints", "*.npz")])
        if path:
            self.worker.send("call", fn=save_in_worker, reply="checkpoint_saved", path=path)

    def load_checkpoint_dialog(self) -> None:
        """File > Load checkpoint…"""
        path = filedialog.askopenfilename(parent=self.root, title="Load a checkpoint",
                                          filetypes=[("Checkpoints", "*.npz"), ("All files", "*")])
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str) -> None:
        """Replaces the run by a saved one (its settings come with it)."""
        self.worker.send("load_checkpoint", path=path)

    def export_plot_dialog(self) -> None:
        """File > Export current plot…"""
        tab = self.current_tab()
        path = filedialog.asksaveasfilename(parent=self.root, title="Export the plot", defaultextension=".png",
                                            initialfile=f"{tab.title.lower().replace(' ', '-')}.png",
                                            filetypes=[("PNG image", "*.png"), ("SVG drawing", "*.svg")])
        if path:
            self.export_plot(path)

    def export_plot(self, path: str) -> None:
        """Writes the visible tab's figure (PNG or SVG by suffix)."""
        try:
            self.current_tab().export(path)
        except (OSError, ValueError) as err:
            self.show_error(f"{path}: the plot cannot be written ({err}).")
            return
        self.set_status(f"exported the plot to {path}")

    def export_csv_dialog(self) -> None:
        """File > Export metrics CSV…"""
        path = filedialog.asksaveasfilename(parent=self.root, title="Export metrics", defaultextension=".csv",
                                            initialfile="metrics.csv", filetypes=[("CSV", "*.csv")])
        if path:
            self.export_csv(path)

    def export_csv(self, path: str) -> None:
        """Writes the run's step metrics as CSV."""
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.history.csv())
        except OSError as err:
            self.show_error(f"{path}: cannot be written ({err.strerror or err}).")
            return
        self.set_status(f"exported the metrics to {path}")
