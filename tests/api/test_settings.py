"""ApiSettings: environment parsing and the checks that refuse bad values."""

import pytest
from pydantic import SecretStr, ValidationError

from api.settings import ApiSettings
from headrace.cli.hints import one_line


def test_defaults_bind_locally_and_accept_a_thousand_candidates() -> None:
    settings = ApiSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_candidates == 1_000
    assert settings.traffic == {} and settings.api_keys == [] and settings.admin_token is None


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_TRAFFIC", '{"main": 0.9, "tree": 0.1}')
    monkeypatch.setenv("HEADRACE_API_KEYS", "first-key-0123456789, second-key-0123456789")
    monkeypatch.setenv("HEADRACE_SHADOW_VARIANT", "tree")
    monkeypatch.setenv("HEADRACE_MAX_BODY_BYTES", "2048")
    settings = ApiSettings()
    assert settings.traffic == {"main": 0.9, "tree": 0.1}
    assert [k.get_secret_value() for k in settings.api_keys] == [
        "first-key-0123456789",
        "second-key-0123456789",
    ]
    assert settings.shadow_variant == "tree"
    assert settings.max_body_bytes == 2048


def test_secrets_do_not_show_in_reprs() -> None:
    settings = ApiSettings(
        api_keys=[SecretStr("a-very-private-api-key")], admin_token=SecretStr("Zq8-v3RtY1pLm0Xw4s")
    )
    assert "a-very-private-api-key" not in repr(settings)
    assert "Zq8-v3RtY1pLm0Xw4s" not in repr(settings)


@pytest.mark.parametrize(
    "token",
    ["changeme", "CHANGEME-changeme-please", "change-me-0123456789", "short-Xy7", "a" * 32],
)
def test_placeholder_or_short_admin_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="admin_token"):
        ApiSettings(admin_token=SecretStr(token))


def test_retired_admin_tokens_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADRACE_ADMIN_TOKEN", "q3VtY8nE1xJk0pLw7RzA")
    monkeypatch.setenv("HEADRACE_ADMIN_PREVIOUS_TOKENS", "Hb7-Tn2qWx9LpKe4, mR5sV1cZ8yDj3uQa")
    settings = ApiSettings()
    assert settings.admin_tokens() == [
        "q3VtY8nE1xJk0pLw7RzA",
        "Hb7-Tn2qWx9LpKe4",
        "mR5sV1cZ8yDj3uQa",
    ]


def test_retired_tokens_alone_do_not_turn_the_admin_routes_on() -> None:
    settings = ApiSettings(admin_previous_tokens=[SecretStr("Hb7-Tn2qWx9LpKe4")])
    assert settings.admin_tokens() == []


def test_a_placeholder_retired_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="admin_previous_tokens"):
        ApiSettings(admin_previous_tokens=[SecretStr("changeme-changeme-changeme")])


def test_a_real_admin_token_is_accepted() -> None:
    settings = ApiSettings(admin_token=SecretStr("q3VtY8nE1xJk0pLw7RzA"))
    assert settings.admin_token is not None


@pytest.mark.parametrize(
    "traffic",
    [{"main": -0.1}, {"main": float("nan")}, {"main": 0.0, "tree": 0.0}, {"": 1.0}],
)
def test_bad_traffic_splits_are_refused(traffic: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="traffic"):
        ApiSettings(traffic=traffic)


@pytest.mark.parametrize(
    "key", ["", "k1", "short-key-12", "changeme-changeme-0001", "x" * 40, "storefront-example-key"]
)
def test_weak_api_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="api_keys"):
        ApiSettings(api_keys=[SecretStr("a-strong-first-key-0123"), SecretStr(key)])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEADRACE_ADMIN_TOKEN", "hunter2-changeme"),
        ("HEADRACE_ADMIN_TOKEN", "hunter2-Q"),
        ("HEADRACE_API_KEYS", "valid-storefront-key-0123,hunter2-Q"),
        ("HEADRACE_ADMIN_PREVIOUS_TOKENS", "hunter2-placeholder"),
    ],
)
def test_a_refused_secret_is_not_echoed_in_the_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        ApiSettings()
    assert "hunter2" not in str(refused.value)
    assert "hunter2" not in one_line(refused.value)  # what `headrace serve` prints


def test_serve_refuses_bad_settings_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from headrace.cli import main

    monkeypatch.setenv("HEADRACE_ADMIN_TOKEN", "changeme")
    assert main(["serve"]) == 2
    assert "admin_token" in capsys.readouterr().err
    monkeypatch.delenv("HEADRACE_ADMIN_TOKEN")
    assert main(["serve", "--workers", "0"]) == 2
