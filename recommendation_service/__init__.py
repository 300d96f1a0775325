"""The recommendation service: scores the catalog for a user from their purchase history and
what others bought together, and publishes the list (README.md has the map of its modules)."""
