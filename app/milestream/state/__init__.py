"""Where customer state lives: one interface, memory and RocksDB backends, namespaced keys."""

from .base import StateStore
from .keys import Namespace, StateKey
from .memory import MemoryStore

__all__ = ["MemoryStore", "Namespace", "StateKey", "StateStore"]
