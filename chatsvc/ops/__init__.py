"""Operating the service: Prometheus metrics, structured logs, backup and restore (docs/operations.md)."""
