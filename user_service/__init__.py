"""User service: registration, login (Argon2 hashes, JWT issuing), preferences, purchase history."""
