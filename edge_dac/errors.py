"""User-facing errors.

Anything a user can cause (a bad file, a bad config key, a corrupt checkpoint) raises an
``EdgeDacError`` whose message is one line naming the problem and the fix. The CLI prints it
without a traceback; everything else is a bug and keeps its traceback.
"""


class EdgeDacError(Exception):
    """An error caused by input the user controls; printed as one line by the CLI."""


class ConfigError(EdgeDacError):
    """A config file is missing, unreadable, or has a bad key or value."""


class AudioError(EdgeDacError):
    """An audio file is missing, unreadable, empty or holds invalid samples."""


class CheckpointError(EdgeDacError):
    """A model checkpoint is missing, corrupt or does not match its config."""


def first_line(error: BaseException) -> str:
    """An exception as one line for a user-facing message: ``Type: first line of its text`` (or just ``Type``)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
