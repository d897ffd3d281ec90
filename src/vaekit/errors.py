"""The one exception type for mistakes a user can fix.

The CLI prints a `UserError` as a single line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's data, settings or paths, worded so that they can act on it."""
