"""`python -m order_service`: serve on $HOST:$PORT (default 127.0.0.1:7000)."""

from order_service.main import create_app
from order_service.settings import OrderSettings
from shared.serve import run_service

if __name__ == "__main__":
    run_service(create_app, OrderSettings())
