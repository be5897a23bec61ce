"""More than one GPU: workers on any machine, fed by the bot through Redis Streams.

- :mod:`wire`: what an entry holds (JSON and PNG bytes, checked on reading; never pickle).
- :mod:`keys`: the Redis key names and the connection, shared by both sides.
- :mod:`progress`: Started/Progress events on their stream; :mod:`roster`: the live workers.
- :mod:`worker`: ``python bot.py --worker``: runs batches through the same :class:`GpuExecutor`.
- :mod:`dispatch`: the bot's executor that hands batches to workers (``[cluster] redis_url``).
- :mod:`local`: ``cluster.local_worker``: the bot's own GPU as one more worker, in its process.
- :mod:`status`: the workers in words for /easel status.
"""
