"""The one exception type for bad configuration, so callers can catch it and print it plainly."""


class ConfigError(ValueError):
    """A configuration file or override is wrong; the message names the key, its source and the fix."""
