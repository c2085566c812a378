"""A tiny web app to try podlink on: edit greeting.py and watch it restart in the target."""
