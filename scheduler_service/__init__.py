"""The scheduler service: keeps promotion subscriptions and publishes one promotion per
subscribed user each period, once across replicas (README.md has the map of its modules)."""
