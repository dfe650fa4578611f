"""Helpers for the integration tests: a managed nats-server and a NATS message collector."""
