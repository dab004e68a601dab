"""Everything that crosses the lattice: subjects, message types, encoding, connections."""
