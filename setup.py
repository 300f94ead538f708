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
            # BLAKE2b's reference implementation is #included by _lanes.c (one unit)
            depends=["streams/core/vendor/blake2/blake2b-ref.c",
                     "streams/core/vendor/blake2/blake2.h",
                     "streams/core/vendor/blake2/blake2-impl.h"],
            libraries=["m"],
            # hidden: only PyInit__lanes is exported (not the vendored blake2b_* symbols)
            extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-fvisibility=hidden"],
        )
    ]
)
