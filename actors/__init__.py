"""Ray actors over the media_ray core: ingest of streams, and the runtime that wires them up."""
