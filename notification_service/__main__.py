"""`python -m notification_service`: serve the notification service."""

from notification_service.main import create_app
from notification_service.settings import NotificationSettings
from shared.serve import run_service

if __name__ == "__main__":
    run_service(create_app, NotificationSettings())
