"""Alertmanager as a peer: asking the HA Alertmanagers what they hold, to back-fill truncated batches, reconcile open incidents and silence their alerts."""  # noqa: E501
