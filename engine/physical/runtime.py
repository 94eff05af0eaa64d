"""Ray: the only module that calls ``ray.init``. Starts or joins a cluster and finds the shard-host actors."""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import ray

from engine.physical.host import ShardHost
from engine.registry import UdfLimits

NAMESPACE = "tessera"
log = logging.getLogger(__name__)


def start(address: str | None, num_cpus: int | None) -> None:
    """Join ``address`` ("auto", "ray://...") or start a local Ray; reuses a Ray this process already runs."""
    if ray.is_initialized():
        return
    options: dict[str, Any] = {"namespace": NAMESPACE, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **options)


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def host_pool(data_dir: str, size: int, lease_seconds: float, udf_limits: UdfLimits | None = None) -> list[Any]:
    """The fixed pool of shard hosts for one data directory: get them if they exist, else create them.

    Hosts are named and detached, so every client of the cluster talks to the same host for a shard (the host
    serialises that shard's writers), and a killed host is restarted by Ray and reloads its shards from storage.
    """
    tag = hashlib.sha1(os.path.abspath(data_dir).encode()).hexdigest()[:10]
    actor = ray.remote(ShardHost)
    return [
        actor.options(
            name=f"host-{tag}-{i}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_task_retries=0,
            max_concurrency=64,
            num_cpus=0,
        ).remote(lease_seconds, udf_limits)
        for i in range(size)
    ]


def kill(actor: Any) -> None:
    ray.kill(actor, no_restart=False)
