"""Where customer state lives: one interface, memory and RocksDB backends."""

from .base import StateStore
from .memory import MemoryStore

__all__ = ["StateStore", "MemoryStore"]
