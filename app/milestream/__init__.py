"""Milestream: an event-sourced loyalty milestones engine on Kafka."""

__version__ = "0.1.0"
