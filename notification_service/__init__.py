"""Notification service: stores notifications from events, emails them, tracks reads."""
