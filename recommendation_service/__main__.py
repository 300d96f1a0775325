"""`python -m recommendation_service`: serve on $HOST:$PORT (default 127.0.0.1:8000)."""

from recommendation_service.main import create_app
from recommendation_service.settings import RecommendationSettings
from shared.serve import run_service

if __name__ == "__main__":
    run_service(create_app, RecommendationSettings())
