"""Exceptions raised by the pure bandit code.

BanditError                  base of everything raised here
└── InvalidParameterError    a policy or update parameter outside its range (also a ValueError)
"""

from __future__ import annotations

from functools import partial
from typing import Any


class BanditError(Exception):
    """Base class of the errors raised by :mod:`bandit`."""


class InvalidParameterError(BanditError, ValueError):
    """A parameter is outside its documented range; the message names it and the range.

    ``parameter`` is the offending parameter as the raising code names it (a settings field
    or an argument), so that callers point at it without parsing the message.
    """

    def __init__(self, message: str, *, parameter: str) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # The default rebuilds from ``args`` alone, which lacks the keyword: worker
        # processes could not send the error back.
        return partial(type(self), parameter=self.parameter), (self.message,)
