"""PostgreSQL access: table definitions, connection handling and repository functions."""
