"""The order service: places orders and publishes their events (features in a later issue)."""
