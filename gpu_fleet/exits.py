"""Exit statuses and the one-line error of every gpu-fleet command; its own module so the
subcommands (simulate, tune) need not import the CLI that dispatches to them."""

from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def one_line(error: BaseException) -> str:
    """An unexpected error as one line: its type and the first line of its message."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
