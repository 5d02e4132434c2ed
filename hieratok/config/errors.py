"""Exception types for a user's mistake, so the CLI can print it as one line and exit 2."""


class UserError(Exception):
    """Something the user gave is wrong or unusable; the message names it and the fix."""


class ConfigError(UserError, ValueError):
    """A configuration file or override is wrong; the message names the key, its source and the fix."""
