"""The local stack: embedded parts (broker, Redis, SMTP sink) and the fleet supervisor."""
