"""Learning from outcomes: what the stored incidents say about signal quality, response and
business impact."""
