"""Ray Serve deployments: thin wrappers that add multiplexing, batching and handles to `service` (and `core`)."""
