"""Background jobs: a durable queue in the catalog (``engine.storage.jobs``), run on Ray.

``scheduler``  one per process that runs jobs: claims pending jobs atomically, hands each to a worker actor of a
               bounded pool, heartbeats its runs, and enforces cancel and timeout (asking first, then forcing)
``worker``     the Ray actor that runs one job at a time with its own engine client
``context``    what a handler gets: progress, log, cancelled, the engine client
``types``      the contract's job types and how a job finds its handler in the plugin registry
"""
