"""Exceptions raised by :mod:`arms`.

    ConfigurationError            a configuration or parameter space is invalid (a ValueError)

``field`` names the offending parameter (``text_match``) or attribute (``parameters[1].low``)
so that the API can point the client at it.
"""


class ConfigurationError(ValueError):
    """An invalid parameter space or configuration; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
