"""``milestream backfill``: a milestone created after the activity it counts, computed over the retained topics.

The command copies each input record of the milestone's past, unchanged, to the
backfill topic (on the partition it came from, in time order across topics), between a
start and an end marker per partition; the workers that own those partitions apply
the copies to that milestone alone while live processing goes on
(pipeline/backfill.py). Its progress is checkpointed on the compacted ``backfills``
topic, so a run stopped at any point resumes where it stopped. docs/backfill.md is the
operator's guide.

* ``plan.py``: which records a run reads, and the partitions that no longer hold them.
* ``status.py``: the run's status record, and how far the workers have applied it.
* ``copier.py``: the run itself.
* ``command.py``: the command line (progress, ``--status``, ``--dry-run``).
"""
