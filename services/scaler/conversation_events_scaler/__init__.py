"""Queue-length autoscaler of the workers.

A pure decision (:func:`conversation_events_scaler.decision.desired_replicas`) plus a thin loop:
read the queue's depth from the RabbitMQ management API, decide, act through an actuator
(the worker Deployment's ``scale`` subresource, or local worker processes). See
``docs/autoscaling.md``.
"""
