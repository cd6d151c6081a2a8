"""The batch runtime: the customer-keyed topics consumed in batches, below Faust's per-message path.

consumer group → assignment → restore each partition's store from the changelog
(partitions.py) → batch loop (processor.py) → checkpoint (checkpoint.py).
"""
