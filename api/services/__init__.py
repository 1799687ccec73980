"""Use cases of the service; they flush, the caller's transaction commits."""
