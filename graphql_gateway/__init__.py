"""The GraphQL gateway: the fleet's public API (Strawberry on FastAPI), routing to the services."""
