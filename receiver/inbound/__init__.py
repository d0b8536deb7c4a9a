"""Hearing back from PagerDuty, Slack and Jira: each vendor's webhook, its signature check
and what it records on the incident."""
