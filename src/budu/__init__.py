"""budu: a container engine — OCI runtime, images, engine and a Docker-compatible CLI."""

__version__ = "0.1.0"
