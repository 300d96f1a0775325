"""`fleet`: the operator's command line (typer + rich) for a running fleet: health and
readiness, topic lag, topics, dead letters and their replay, and a live tail of a topic."""
