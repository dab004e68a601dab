"""The lattice: the NATS server Motes runs on, embedded or reached by URL."""

from .server import NatsServer, ServerConfig, find_binary

__all__ = ["NatsServer", "ServerConfig", "find_binary"]
