"""The node agent and the local mesh (an embedded lattice plus N node processes)."""
