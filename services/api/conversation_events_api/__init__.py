"""HTTP API: accepts finished conversations (202), serves their status, runs the outbox relay."""
