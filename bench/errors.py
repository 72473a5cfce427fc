"""User-facing errors: one line, exit code 2, never a traceback."""


class UsageError(Exception):
    """A mistake in the user's command, config or data: say what, where, and how to fix it."""

    exit_code = 2
