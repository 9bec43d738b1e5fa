"""Jupyter integration: magics, the live run view, the server extension."""
