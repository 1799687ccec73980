"""Parameter spaces and arm configurations: immutable values, validation, generation."""

from arms.errors import ConfigurationError
from arms.space import Configuration, Distribution, Parameter, ParameterSpace, ParameterType

__all__ = [
    "Configuration",
    "ConfigurationError",
    "Distribution",
    "Parameter",
    "ParameterSpace",
    "ParameterType",
]
