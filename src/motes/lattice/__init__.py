"""The lattice: the NATS server Motes runs on, embedded or reached by URL."""

from .server import (
    Cluster,
    LeafRemote,
    Listen,
    NatsServer,
    Operator,
    ServerConfig,
    TlsFiles,
    find_binary,
    is_loopback,
)

__all__ = [
    "Cluster",
    "LeafRemote",
    "Listen",
    "NatsServer",
    "Operator",
    "ServerConfig",
    "TlsFiles",
    "find_binary",
    "is_loopback",
]
