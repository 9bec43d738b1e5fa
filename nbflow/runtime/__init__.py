"""The Redis-stream runtime: client, workers, leases, step memo, embedded server."""
