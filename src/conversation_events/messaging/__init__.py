"""Broker-independent messaging contracts: topology names and arguments, and the message body."""
