"""``splice mine --ray ADDRESS``: one Ray task per repository (imported only with ``--ray``).

``ADDRESS`` is a Ray cluster address (e.g. ``ray://head:10001`` or ``auto``), or ``local`` for a
single-node Ray started on this machine for the run (what the tests use; Ray 2.5x removed its
in-process ``local_mode``). Each task mines its repository into its own shard, so the output
folder must be shared by the cluster's nodes.
"""

from __future__ import annotations

import os

from splice.data.mining.repository import MineOptions, MineSummary, mine_repository

#: Object store of the local Ray (records travel as files, not objects: little is needed).
LOCAL_OBJECT_STORE = 128 * 1024 * 1024


def _mine_task(source: str, out: str | None, opts: MineOptions) -> MineSummary:
    return mine_repository(source, out, opts)


def mine_on_ray(
    address: str, sources: list[str], out: str | None, opts: MineOptions
) -> list[MineSummary]:
    """Mine ``sources`` as Ray tasks; the summaries in the order of ``sources``."""
    import ray

    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(
                num_cpus=max(1, min(len(sources), os.cpu_count() or 1)),
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=LOCAL_OBJECT_STORE,
            )
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(_mine_task)
        quiet = MineOptions(**{**opts.__dict__, "progress": False})
        return list(ray.get([task.remote(source, out, quiet) for source in sources]))
    finally:
        if started:
            ray.shutdown()
