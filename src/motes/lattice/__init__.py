"""The lattice: the NATS server Motes runs on, embedded or reached by URL."""

from .server import NatsServer, Operator, ServerConfig, find_binary

__all__ = ["NatsServer", "Operator", "ServerConfig", "find_binary"]
