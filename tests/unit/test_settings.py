import pytest
from pydantic import ValidationError

from shared.settings import ServiceSettings

LONG_SECRET = "s" * 40


def test_environment_names_of_the_contract_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5123")
    monkeypatch.setenv("KAFKA_BROKER", "kafka:9092")
    monkeypatch.setenv("MONGO_URI", "mongodb://db:27017")
    monkeypatch.setenv("JWT_SECRET", LONG_SECRET)
    monkeypatch.setenv("ADMIN_EMAILS", " Boss@Example.com , ,ops@example.com")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://shop.example.com")
    settings = ServiceSettings(_env_file=None)
    assert settings.port == 5123
    assert settings.kafka_broker == "kafka:9092"
    assert settings.mongo_uri == "mongodb://db:27017"
    assert settings.jwt_secret.get_secret_value() == LONG_SECRET
    assert settings.admin_email_set == {"boss@example.com", "ops@example.com"}
    assert settings.public_base_url == "https://shop.example.com"


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", LONG_SECRET)
    settings = ServiceSettings(_env_file=None)
    assert settings.mongo_uri == "memory://"
    assert not hasattr(settings, "jwt_ttl_seconds")  # ACCESS_TOKEN_TTL_SECONDS (user service)
    assert settings.admin_email_set == frozenset()


def test_missing_or_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="jwt_secret"):
        ServiceSettings(_env_file=None)
    monkeypatch.setenv("JWT_SECRET", "short")
    with pytest.raises(ValidationError, match="at least 32"):
        ServiceSettings(_env_file=None)


def test_secret_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", LONG_SECRET)
    assert LONG_SECRET not in repr(ServiceSettings(_env_file=None))


def test_bad_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", LONG_SECRET)
    monkeypatch.setenv("PORT", "70000")
    with pytest.raises(ValidationError):
        ServiceSettings(_env_file=None)


def test_log_level_is_checked_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", LONG_SECRET)
    monkeypatch.setenv("LOG_LEVEL", " debug ")
    assert ServiceSettings(_env_file=None).log_level == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError, match="LOG_LEVEL must be one of"):
        ServiceSettings(_env_file=None)


def test_outages_wait_fifteen_minutes_by_default_and_backoff_is_in_order() -> None:
    settings = ServiceSettings(_env_file=None, jwt_secret=LONG_SECRET)
    assert settings.kafka_retry_horizon_seconds == 900
    with pytest.raises(ValidationError, match="KAFKA_RETRY_BACKOFF_MAX_SECONDS"):
        ServiceSettings(
            _env_file=None,
            jwt_secret=LONG_SECRET,
            kafka_retry_backoff_seconds=5,
            kafka_retry_backoff_max_seconds=1,
        )


def test_a_mail_lease_outlasts_the_whole_smtp_exchange() -> None:
    from notification_service.settings import NotificationSettings

    settings = NotificationSettings(_env_file=None, jwt_secret=LONG_SECRET)
    assert settings.smtp_send_timeout_seconds < settings.mail_lease_seconds
    with pytest.raises(ValidationError, match="shorter than MAIL_LEASE_SECONDS"):
        NotificationSettings(
            _env_file=None,
            jwt_secret=LONG_SECRET,
            smtp_send_timeout_seconds=60,
            mail_lease_seconds=60,
        )
    with pytest.raises(ValidationError, match="SMTP_TIMEOUT_SECONDS"):
        NotificationSettings(
            _env_file=None,
            jwt_secret=LONG_SECRET,
            smtp_timeout_seconds=40,
            smtp_send_timeout_seconds=30,
        )


def test_a_promotion_lease_is_shorter_than_the_done_mark() -> None:
    from scheduler_service.settings import SchedulerSettings

    with pytest.raises(ValidationError, match="PROMOTION_LEASE_SECONDS"):
        SchedulerSettings(
            _env_file=None,
            jwt_secret=LONG_SECRET,
            promotion_lease_seconds=100,
            promotion_lock_ttl_seconds=100,
        )
