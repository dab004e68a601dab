"""Declaring apps (``App``, ``@app.mote``, ``@app.actor``) and bundling them."""

from .app import App, Command, Declared
from .bundle import Bundle, build_bundle, extract_bundle, find_app, load_app_file

__all__ = [
    "App",
    "Bundle",
    "Command",
    "Declared",
    "build_bundle",
    "extract_bundle",
    "find_app",
    "load_app_file",
]
