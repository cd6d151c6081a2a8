"""Event schemas: strict pydantic models for every input and output event."""

from .base import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION"]
