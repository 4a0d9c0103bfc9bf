"""What no implementation can beat here: `noio` (HTTP), `postgres` (commits), `amqp` (confirms)."""
