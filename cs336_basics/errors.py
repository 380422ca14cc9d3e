"""The one exception type that means "the user asked for something we cannot do".

Library code raises :class:`UserError` (or a subclass) with a one-line message
that names the problem and the fix. The CLI turns it into ``error: <message>``
on stderr and exit code 2, without a traceback (``--debug`` shows one).
Programming errors stay ordinary exceptions so they are never hidden.
"""


class UserError(Exception):
    """Bad input, a missing file, an impossible setting: reported in one line, exit code 2."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A configuration file or ``--set`` override names an unknown key or has the wrong type."""
