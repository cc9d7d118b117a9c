"""Booking and intake analytics: an event stream in Redis, folded into per-course, per-week aggregates.

``events`` (what is emitted, and ``EventLog.emit``), ``fold`` (an event -> idempotent aggregate
operations, no I/O), ``aggregates`` (the Redis side: one Lua script applies an event's operations once),
``consumer`` (the consumer group that folds the stream), ``report`` (reading the aggregates back as the
figures staff see), ``charts`` (matplotlib SVGs), ``weekly`` (the hosts' weekly email), ``semester``
(a synthetic semester for demos).
"""
