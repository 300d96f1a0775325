"""`python -m user_service`: serve the user service on its settings' host and port."""

from shared.serve import run_service
from user_service.main import create_app
from user_service.settings import UserSettings

if __name__ == "__main__":
    run_service(create_app, UserSettings())
