"""One function per command: each takes plain configuration and a store, and returns plain data."""
