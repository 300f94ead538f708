"""The one compiled part of c2m-pulse: the engine's lanes (C, CPython API only).

Everything else is in pyproject.toml. Building needs a C compiler and the Python headers
(on Debian: gcc and python3-dev; both are on this project's machines).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streams.core._lanes",
            sources=["streams/core/_lanes.c"],
            libraries=["m"],
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
