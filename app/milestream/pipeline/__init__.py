"""Between the broker and the engine: the topology and its in-process test driver."""
