"""``make dist``: build the sdist and wheel of the provider and of the emulator, then check them.

Both distributions are built with ``python -m build`` into one folder (default ``dist/``, emptied
first, so that nothing of an older version is left beside the new files), then checked with
``twine check --strict`` (metadata complete, README renders on PyPI).

The builds run ``--no-isolation``: with the dev venv's setuptools, pinned by the lock, instead of
whatever setuptools PyPI serves that day. They need no network and give the same files on every
machine that installed the same lock. Each wheel is built from its sdist, so an sdist that lacks a
file the build needs fails here.

Usage: ``python scripts/dist.py [--outdir DIR]``; prints one line per artifact.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The project folders, each with its own build configuration.
PROJECTS: tuple[Path, ...] = (ROOT, ROOT / "emulator")


def _run(argv: list[str]) -> str:
    """Run a command, returning its output; exit with that output when it fails.

    :param argv: the command line.
    :return: stdout and stderr together.
    :raises SystemExit: when the command exits non-zero.
    """
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{output[-6000:]}")
    return output


def build(outdir: Path) -> list[Path]:
    """Build both distributions into ``outdir`` (emptied first) and ``twine check`` them.

    :param outdir: the target folder (created).
    :return: the artifacts, sorted by name.
    :raises SystemExit: when a build or the check fails (with the tool's output).
    """
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    for project in PROJECTS:
        _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(outdir), str(project)])
    artifacts = sorted(outdir.iterdir())
    _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, artifacts)])
    return artifacts


def main(argv: list[str] | None = None) -> int:
    """Build, check, and print the artifacts.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    :return: the exit code.
    """
    parser = argparse.ArgumentParser(prog="python scripts/dist.py", description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=ROOT / "dist", help="target folder (default: dist/)")
    args = parser.parse_args(argv)
    for artifact in build(args.outdir):
        print(f"{artifact}  {artifact.stat().st_size:>8} bytes  twine check: PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
