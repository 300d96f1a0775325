"""The recommendation service: scores catalog products per user (features in a later issue)."""
