"""Ray Serve deployments over the media_ray core."""
