"""The ``motes`` command line."""
