"""The Python client of ranktune.

    from ranktune_client import Client

    with Client("http://ranktune:8000", defaults={"similar-items": WEIGHTS}) as ranktune:
        assignment = ranktune.get_config("similar-items", unit=user_id)
        rank(listings, assignment.config)          # never raises: falls back when it must
        ranktune.track(assignment, "contact")      # queued; sent in batches in the background

See the README's "Client SDK" section for the fallback semantics and the settings.
"""

from ranktune_client._async import AsyncClient
from ranktune_client._errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RanktuneError,
    RequestRefused,
    Unauthorized,
    UnsupportedMediaType,
)
from ranktune_client._models import (
    FALLBACK_REASONS,
    SERVER_ERROR,
    TIMEOUT,
    UNKNOWN_EXPERIMENT,
    UNREACHABLE,
    Assignment,
    Config,
    Stats,
)
from ranktune_client._sync import Client

__version__ = "0.1.0"

__all__ = [
    "FALLBACK_REASONS",
    "SERVER_ERROR",
    "TIMEOUT",
    "UNKNOWN_EXPERIMENT",
    "UNREACHABLE",
    "Assignment",
    "AsyncClient",
    "Client",
    "Config",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "RanktuneError",
    "RequestRefused",
    "Stats",
    "Unauthorized",
    "UnsupportedMediaType",
]
