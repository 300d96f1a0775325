"""`python -m kafka_admin_service`: serve on $HOST:$PORT (default 127.0.0.1:3000)."""

from kafka_admin_service.main import create_app
from kafka_admin_service.settings import KafkaAdminSettings
from shared.serve import run_service

if __name__ == "__main__":
    run_service(create_app, KafkaAdminSettings())
