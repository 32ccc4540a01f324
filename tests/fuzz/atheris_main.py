"""One target under atheris (libFuzzer, coverage-guided): ``python -m
tests.fuzz.atheris_main TARGET [libFuzzer flags] [CORPUS_DIR]``. ``tests.fuzz.run``
starts it once per target; libFuzzer stops at the first failure, writes the input
to ``-artifact_prefix`` and exits non-zero."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["proxy.core"]):  # coverage of the core only
        from .targets import TARGETS
    atheris.Setup([argv[0], *argv[2:]], TARGETS[argv[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
