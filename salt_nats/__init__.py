"""Forward a SaltStack master's event bus to NATS."""

__version__ = "0.1.0"
