import pytest

from shared.errors import HTTP_STATUS, AppError, Conflict, ErrorCode, InternalError, NotFound


def test_every_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)


def test_error_round_trips_from_its_body() -> None:
    body = Conflict("That email is already registered.").to_body()
    rebuilt = AppError.from_code(body["error"]["code"], body["error"]["message"])
    assert isinstance(rebuilt, Conflict)
    assert rebuilt.http_status == 409
    assert rebuilt.message == "That email is already registered."


@pytest.mark.parametrize("code", ["SOMETHING_NEW", ""])
def test_unknown_codes_become_internal_errors(code: str) -> None:
    assert isinstance(AppError.from_code(code, "x"), InternalError)


def test_default_message_is_one_sentence() -> None:
    assert NotFound().message.endswith(".")
