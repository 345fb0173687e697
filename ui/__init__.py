"""transformer-sim's desktop lab: a Tk window with embedded Matplotlib canvases over the simulator's public API.

Imports point down only: `ui/` reads the session, configs, presets and records, never a kernel or a layer.
Tk and Matplotlib are touched from the main thread only; the session lives in `ui.worker`'s thread.
"""
