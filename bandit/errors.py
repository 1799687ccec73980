"""Exceptions raised by the pure bandit code.

BanditError                  base of everything raised here
└── InvalidParameterError    a policy or update parameter outside its range (also a ValueError)
"""


class BanditError(Exception):
    """Base class of the errors raised by :mod:`bandit`."""


class InvalidParameterError(BanditError, ValueError):
    """A parameter is outside its documented range; the message names it and the range."""
