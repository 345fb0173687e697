"""Where the window opens and how large: fitted to the screen's usable area, remembered per user, scaled for density.

The decisions are small pure functions (`display_scale`, `opening_size`, `on_screen`, `read_state`) so
tests can check them without a display; `WindowPlacer` asks Tk for the facts (pixels per inch, the
screen's usable area, the window's geometry) and applies the answers.

* Size: the default size where it fits the usable area, else the usable area itself; never below the
  smallest usable layout unless the screen is smaller still (the content then scrolls, see
  `ui/scrollarea.py`). A remembered size wins over the default, within the same limits.
* Position: the remembered one, pulled back onto the screen when it lies (partly) off it (a second
  monitor unplugged, a smaller screen); otherwise the window manager places the window.
* Density: on a screen of more than ~120 pixels per inch the pixel sizes (default, smallest) grow by a
  factor snapped to quarters, and `tk scaling` is set to that same factor, so Tk's point-sized fonts and
  the figures (Matplotlib's Tk canvas renders at figure.dpi x winfo_fpixels('1i') / 96 on Linux and
  tk scaling / (96/72) on Windows) grow together, at the screen's own resolution (not stretched, so not
  blurry). TRANSFORMER_SIM_SCALE overrides the factor when a screen misreports its density.
* Memory: `window.json` in the user's config folder (XDG_CONFIG_HOME or ~/.config, then transformer-sim),
  written atomically when the window closes; a missing or broken file is ignored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "window.json"
STATE_VERSION = 1
SCALE_ENV = "TRANSFORMER_SIM_SCALE"
BASE_PPI = 96.0  # what Tk and Matplotlib take as scale 1
HIDPI_FROM = 1.25  # factors below this are treated as 1: an ordinary screen that reports 100 or 110 ppi
MAX_SCALE = 4.0
WM_TITLE_ALLOWANCE = 32  # the window manager's title bar sits inside the work area but outside our geometry


@dataclass(frozen=True)
class Area:
    """A rectangle of the screen in pixels: the part windows may use (the work area)."""

    x: int
    y: int
    width: int
    height: int


# ------------------------------------------------------------------ pure decisions
def display_scale(ppi: float, platform: str = sys.platform, override: str | None = None) -> float:
    """The factor pixel sizes and fonts grow by on a screen of `ppi` pixels per inch (1.0 on ordinary screens).

    Snapped to quarters so fonts and figures land on the same sizes; macOS scales Retina screens itself
    (Tk's coordinates there are points), so it stays 1 unless overridden. `override` is the text of
    TRANSFORMER_SIM_SCALE; one that is not a number in [1, 4] is ignored.
    """
    if override:
        try:
            value = float(override)
        except ValueError:
            value = 0.0
        if 1.0 <= value <= MAX_SCALE:
            return value
    if platform == "darwin" or not ppi or ppi != ppi:
        return 1.0
    factor = ppi / BASE_PPI
    if factor < HIDPI_FROM:
        return 1.0
    return min(MAX_SCALE, round(factor * 4) / 4)


def tk_scaling(factor: float) -> float:
    """The `tk scaling` (pixels per point) for a factor: 96 ppi times the factor, over 72 points an inch."""
    return factor * BASE_PPI / 72.0


def scaled(size: tuple[int, int], factor: float) -> tuple[int, int]:
    """A pixel size grown by `factor`."""
    return int(round(size[0] * factor)), int(round(size[1] * factor))


def opening_size(usable: Area, default: tuple[int, int], smallest: tuple[int, int],
                 remembered: tuple[int, int] | None = None) -> tuple[int, int]:
    """The window's size (menu bar included): the remembered or default size where it fits, else the usable area.

    Never below `smallest` while the screen holds it; on a screen smaller still it is the usable area
    (the layout keeps its smallest size and scrolls).
    """
    want = remembered if remembered is not None else default
    out = []
    for w, lo, room in zip(want, smallest, (usable.width, usable.height), strict=True):
        out.append(max(1, min(max(w, min(lo, room)), room)))
    return out[0], out[1]


def on_screen(position: tuple[int, int], size: tuple[int, int], usable: Area) -> tuple[int, int]:
    """A top-left corner moved just enough that a window of `size` lies inside `usable` (top-left wins if too big)."""
    x = min(max(position[0], usable.x), usable.x + max(0, usable.width - size[0]))
    y = min(max(position[1], usable.y), usable.y + max(0, usable.height - size[1]))
    return x, y


def state_path(environ=None) -> Path:
    """window.json in $XDG_CONFIG_HOME/transformer-sim, or ~/.config/transformer-sim."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"  # the spec: relative is invalid
    return root / "transformer-sim" / STATE_FILE


@dataclass(frozen=True)
class WindowState:
    """What is remembered of the window: its size (menu bar included), its corner, the scale it was at."""

    width: int
    height: int
    x: int
    y: int
    scale: float = 1.0

    def size_at(self, factor: float) -> tuple[int, int]:
        """The remembered size at another density (a screen of another scale)."""
        return scaled((self.width, self.height), factor / self.scale)


def read_state(path: Path) -> WindowState | None:
    """The remembered state, or None when the file is missing, unreadable or not what we wrote (never raises)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return None
        ints = [data[k] for k in ("width", "height", "x", "y")]
        scale = data.get("scale", 1.0)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or ints[0] < 1 or ints[1] < 1:
            return None
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 1.0 <= scale <= MAX_SCALE:
            return None
        return WindowState(*ints, scale=float(scale))
    except (OSError, ValueError, KeyError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def write_state(path: Path, state: WindowState) -> bool:
    """Writes the state atomically (the old file or the new, never half); False when it cannot be written."""
    from simulator.api import write_atomically  # temp file + fsync + rename (simulator/runfolder.py)

    text = json.dumps({"version": STATE_VERSION, "width": state.width, "height": state.height, "x": state.x,
                       "y": state.y, "scale": state.scale}, indent=1) + "\n"
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(Path(path), text)
        return True
    except OSError:
        return False


_GEOMETRY = re.compile(r"^(\d+)x(\d+)([+-]-?\d+)([+-]-?\d+)$")


def parse_geometry(text: str) -> tuple[int, int, int, int] | None:
    """'WxH+X+Y' (as `wm geometry` gives it) -> (w, h, x, y), or None."""
    m = _GEOMETRY.match(text.strip())
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3).replace("+-", "-")), int(m.group(4).replace("+-", "-"))


def parse_workarea(text: str, screen: tuple[int, int]) -> Area | None:
    """The first desktop's rectangle from `xprop -root _NET_WORKAREA` output, or None when absent or absurd."""
    nums = [int(n) for n in re.findall(r"-?\d+", text.partition("=")[2] or text.partition(":")[2])]
    if len(nums) < 4:
        return None
    x, y, w, h = nums[:4]
    if w < 100 or h < 100 or x < 0 or y < 0 or x + w > screen[0] or y + h > screen[1]:
        return None
    return Area(x, y, w, h)


# ------------------------------------------------------------------ facts from the display
def usable_area(root) -> Area:
    """The part of the screen a window may use: the work area where the system says it, else the whole screen."""
    screen = (root.winfo_screenwidth(), root.winfo_screenheight())
    if sys.platform == "win32":
        try:
            import ctypes
            from ctypes import wintypes

            rect = wintypes.RECT()
            if ctypes.windll.user32.SystemParametersInfoW(0x0030, 0, ctypes.byref(rect), 0):  # SPI_GETWORKAREA
                return Area(rect.left, rect.top, rect.right - rect.left,
                            rect.bottom - rect.top - WM_TITLE_ALLOWANCE)
        except (AttributeError, OSError, ValueError):
            pass
        return Area(0, 0, screen[0], screen[1] - 48 - WM_TITLE_ALLOWANCE)  # a taskbar and a title bar
    if sys.platform == "darwin":  # the menu bar at the top, the dock, the title bar
        return Area(0, 25, screen[0], screen[1] - 25 - 70 - WM_TITLE_ALLOWANCE)
    if root.tk.call("tk", "windowingsystem") == "x11" and shutil.which("xprop"):
        # an EWMH window manager publishes its work area (screen less panels); bare X (Xvfb) has none
        try:
            out = subprocess.run(["xprop", "-root", "-notype", "_NET_WORKAREA"], capture_output=True, text=True,
                                 timeout=2, env={**os.environ, "DISPLAY": root.winfo_screen()}).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        area = parse_workarea(out, screen)
        if area is not None:
            return Area(area.x, area.y, area.width, area.height - WM_TITLE_ALLOWANCE)
    return Area(0, 0, screen[0], screen[1])


def make_dpi_aware() -> None:
    """On Windows, before the first Tk root: draw at the screen's own resolution, not a stretched 96-dpi bitmap."""
    if sys.platform != "win32":
        return
    try:
        import ctypes

        ctypes.windll.shcore.SetProcessDpiAwareness(1)
    except (AttributeError, OSError):
        pass


def apply_scale(root, environ=None) -> float:
    """Measures the screen's density, sets `tk scaling` to match and returns the factor (before any widget)."""
    environ = os.environ if environ is None else environ
    factor = display_scale(root.winfo_fpixels("1i"), override=environ.get(SCALE_ENV))
    if factor != 1.0:
        root.tk.call("tk", "scaling", tk_scaling(factor))
    return factor
