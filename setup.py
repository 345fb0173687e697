"""Copies the top-level presets/ (the source of truth) into the package as data when building."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithPresets(build_py):
    def run(self):
        src = Path(__file__).parent / "presets"
        dst = Path(self.build_lib) / "simulator" / "presets_data"
        super().run()
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted([*src.glob("*.yaml"), *src.glob("*.txt")]):  # lessons and the small texts they train on
            shutil.copy2(f, dst / f.name)


setup(cmdclass={"build_py": BuildWithPresets})
