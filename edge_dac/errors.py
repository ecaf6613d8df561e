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
