"""The one exception type for errors a user can cause and fix."""


class DensekitError(Exception):
    """What went wrong and what to do about it, in one line.

    The CLI prints ``str(err)`` and exits non-zero; it never shows a traceback for these.
    """
