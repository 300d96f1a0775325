"""The scheduler service: publishes promotions on a schedule (features in a later issue)."""
