"""`python -m graphql_gateway`: serve the gateway under uvicorn."""

from graphql_gateway.main import create_app
from graphql_gateway.settings import GatewaySettings
from shared.serve import run_service

if __name__ == "__main__":
    run_service(create_app, GatewaySettings())
