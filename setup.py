"""Builds the optional C accelerator ``minlog._speedups`` (everything else is in pyproject.toml).

Without a working C compiler the install goes on without it (the pure-Python scan is used),
unless ``MINLOG_REQUIRE_SPEEDUPS=1``: then a failed compile fails the install.
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRED = os.environ.get("MINLOG_REQUIRE_SPEEDUPS") == "1"


class OptionalBuildExt(build_ext):
    """``build_ext`` that only warns when the accelerator cannot be built (unless required)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:
            if REQUIRED:
                raise
            print(f"WARNING: minlog._speedups not built ({e}); the pure-Python scan is used")


setup(
    ext_modules=[Extension("minlog._speedups", ["minlog/_speedups.c", "minlog/_blake2b.c"],
                           depends=["minlog/_blake2b.h", "minlog/_speedups_days.h",
                                    "minlog/_speedups_slots.h"], optional=not REQUIRED)],
    cmdclass={"build_ext": OptionalBuildExt},
)
