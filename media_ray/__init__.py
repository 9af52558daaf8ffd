"""media-ray core: sources, detectors, the data model, exposure and configuration.

Nothing in this package imports Ray; `actors/` and `deployments/` wrap it for Ray.
"""

__version__ = "0.1.0"
