"""One base for errors a user can fix (a config key, a file, an input): the CLI prints their one-line
message and exits 2 instead of showing a traceback."""


class UserError(Exception):
    """Bad input named in the message, with the fix."""
