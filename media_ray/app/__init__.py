"""The driver layer: what starts Ray and Serve and drives the actors and deployments.

The CLI, the runtimes that start Ray and the Serve apps, and the benchmarks that run through
Ray. This is the only part of `media_ray` that may import Ray, `actors/` or `deployments/`
(checked by import-linter, see `pyproject.toml`).
"""
