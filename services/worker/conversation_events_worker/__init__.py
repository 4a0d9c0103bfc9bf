"""Queue consumer: scores stored conversations and updates friendship status; operator CLI."""
