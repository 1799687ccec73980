"""Alembic migrations of the ranktune schema."""
