"""User errors: one readable line, no traceback, a non-zero exit."""


class ConfigError(ValueError):
    """An invalid command line or config: the message names the problem and the valid choices (a ValueError:
    a bad value, wherever it was found)."""
