"""journey-receiver: one consolidated, business-ranked incident per customer journey."""

__version__ = "0.1.0"
