"""User errors: one readable line, no traceback, a non-zero exit."""


class ConfigError(Exception):
    """An invalid command line or config: the message names the problem and the valid choices."""
