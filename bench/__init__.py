"""Benchmarks of Milestream on a real Kafka broker (``make bench``, see BENCHMARKS.md)."""
