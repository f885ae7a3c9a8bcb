"""Scripts that build the container images (build.py) and pin what they install (lock.py)."""
