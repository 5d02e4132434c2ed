"""The one exception type for bad data input (a missing or empty source, a bad file list, a shard
folder that does not match the job), so the CLI can print it plainly and exit 2."""


class DataError(ValueError):
    """A data source, destination or shard folder is wrong; the message names it and the fix."""
