"""`python -m scheduler_service`: serve on $HOST:$PORT (default 127.0.0.1:9000)."""

from scheduler_service.main import create_app
from scheduler_service.settings import SchedulerSettings
from shared.serve import run_service

if __name__ == "__main__":
    run_service(create_app, SchedulerSettings())
