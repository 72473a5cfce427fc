"""User-facing errors: one line, exit code 2, never a traceback."""


from bench.progress import console


def print_error(message: str) -> None:
    """The one line a user sees for a mistake (stderr, no markup, never wrapped)."""
    console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)


class UsageError(Exception):
    """A mistake in the user's command, config or data: say what, where, and how to fix it."""

    exit_code = 2
