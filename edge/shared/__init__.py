"""HTTP plumbing every surface shares: settings, auth, limits, drain, SSE, the error middleware,
observability, content safety and deployments."""
