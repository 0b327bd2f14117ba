"""Command line: a thin layer that parses flags, calls the Python API and formats results.

One module per group of commands; they register on the shared ``app`` in ``common``.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

try:  # newer typer (0.29) vendors click as typer._click and raises its exception classes
    from typer._click import exceptions as click_exc
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_exc

from ..errors import InputError
from .common import app, engine_kwargs, err, gb, out, secs, si  # noqa: F401  (public helpers)

# Importing a command module registers its commands on ``app``, in this (help) order.
from . import analyze, catalog, compare, accuracy, advise, local, serving, fleet, launch, web  # noqa: E402,F401,I001


# What to install when a module is missing (matplotlib and plotly are core dependencies, so
# only a broken or partial install lacks them).
INSTALL_HINTS = {
    "matplotlib": 'pip install matplotlib (a dependency of llmroofline: reinstall with pip install .)',
    "plotly": 'pip install plotly (a dependency of llmroofline: reinstall with pip install .)',
    "fastapi": 'pip install "llmroofline[web]"', "uvicorn": 'pip install "llmroofline[web]"',
    "torch": 'pip install "llmroofline[bench]"', "transformers": 'pip install "llmroofline[bench]"',
}


def _error(msg: str) -> int:
    """One line on stderr; the message is printed literally (it may contain brackets)."""
    err.print("[red]error:[/] " + escape(msg.replace("\n", " ")), highlight=False, soft_wrap=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2."""
    cmd = typer.main.get_command(app)
    try:
        rc = cmd.main(args=argv, prog_name="llmroofline", standalone_mode=False)
    except InputError as e:
        return _error(str(e))
    except click_exc.NoArgsIsHelpError as e:
        e.show()
        return 0
    except click_exc.UsageError as e:
        return _error(e.format_message())
    except typer.Abort:
        return 130
    except ModuleNotFoundError as e:  # an optional piece missing from this install
        top = (e.name or "").split(".")[0]
        hint = INSTALL_HINTS.get(top)
        if hint is None:
            raise
        return _error(f"{top} is not installed: {hint}")
    except OSError as e:  # a file the user named: one line, never a traceback
        from ..safeio import short
        name = f"{short(e.filename)}: " if e.filename else ""
        return _error(f"{name}{e.strerror or e}")
    except typer.Exit as e:
        return e.exit_code
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
