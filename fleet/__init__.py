"""`fleet`: the operator's command line (typer + rich) for a running fleet, never in a service
image: health and readiness, topic lag, topics, dead letters and their replay, a live tail of a
topic and demo data."""
