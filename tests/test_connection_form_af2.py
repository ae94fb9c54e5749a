"""The legacy connection form on Airflow 2.11: the Flask UI's own form class and save logic, for real.

Airflow 2.x builds the connection form from each hook's ``get_connection_form_widgets`` (WTForms fields,
registered by the ProvidersManager as ``extra__<conn_type>__<name>``) and saves the custom fields into the
connection's extra JSON. Airflow 3.2+ reads ``conn-fields`` instead (checked by tests/test_provider_info.py),
and Airflow 3 has no Flask UI, so these tests run on the 2.11 suite only; on 3.3 the widget builder is still
exercised with stand-ins for Flask-AppBuilder (tests/hooks/test_hook_secrets_and_parts.py).
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_qikberry.connection import ConnectionSettings
from airflow_qikberry.get_provider_info import CONN_FIELDS
from tests.helpers import only_before_airflow

pytestmark = only_before_airflow((3, 0), "the Flask connection form (airflow.www) was removed in Airflow 3")

PREFIX = "extra__qikberry__"


@pytest.fixture
def request_context() -> Iterator[None]:
    # The form needs a request context only; CSRF is the UI's business, not what is tested here.
    from flask import Flask

    app = Flask(__name__)
    app.config.update(WTF_CSRF_ENABLED=False, SECRET_KEY="form-test")
    with app.test_request_context(method="POST"):
        yield


def _form(formdata: dict[str, str] | None = None) -> Any:
    from airflow.www.forms import create_connection_form_class
    from werkzeug.datastructures import MultiDict

    form_class = create_connection_form_class()
    return form_class(formdata=MultiDict(formdata)) if formdata is not None else form_class()


def _saved_extra(form: Any) -> str:
    """The extra JSON the Airflow 2 UI stores for a submitted form (its own ``process_form``)."""
    from airflow.www.views import ConnectionModelView

    view = types.SimpleNamespace(
        # process_form only asks the view for the provider fields; the real method ignores self.
        _iter_extra_field_names_and_sensitivity=lambda: (
            ConnectionModelView._iter_extra_field_names_and_sensitivity(None)  # type: ignore[arg-type]
        )
    )
    ConnectionModelView.process_form(view, form, True)  # type: ignore[arg-type]
    return str(form.extra.data)


def test_providers_manager_registers_every_field_and_the_field_behaviour() -> None:
    # Break: drop get_connection_form_widgets (or a CONN_FIELDS entry from it) -> fields missing, fails.
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = {k: v for k, v in manager.connection_form_widgets.items() if k.startswith(PREFIX)}
    assert set(widgets) == {PREFIX + name for name in CONN_FIELDS}
    assert {w.hook_class_name for w in widgets.values()} == {"QikberryHook"}
    behaviour = manager.field_behaviours["qikberry"]
    assert behaviour["hidden_fields"] == ["login", "port", "schema", "extra"]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "Access token"}
    assert behaviour["placeholders"][PREFIX + "sender"] == "QIKBRY"
    assert manager.hooks["qikberry"].hook_name == "Qikberry"


def test_new_form_shows_the_documented_defaults(request_context: None) -> None:
    # Break: drop default= from a widget -> that field opens empty instead of showing the default, fails.
    data = _form().data
    expected = {
        name: spec["schema"]["default"] for name, spec in CONN_FIELDS.items() if "default" in spec["schema"]
    }
    assert expected  # service, timeout, auth_in, verify_ssl, ...
    assert {name: data[PREFIX + name] for name in expected} == expected


def test_a_connection_saved_through_the_form_is_read_back(request_context: None) -> None:
    # Break: build "number" fields as IntegerField -> "2.5" is refused, fails; store prefixed keys the parser
    # does not read -> the settings keep their defaults, fails.
    form = _form(
        {
            "conn_id": "qikberry_ui",
            "conn_type": "qikberry",
            "host": "http://127.0.0.1:8055/api/v2/",
            "password": "ui-token",
            f"{PREFIX}sender": "QIKBRY",
            f"{PREFIX}service": "P",
            f"{PREFIX}timeout": "2.5",
            f"{PREFIX}rate_limit_per_minute": "120",
            f"{PREFIX}default_region": "in",
            f"{PREFIX}check_dlt_sender": "y",  # a ticked box; verify_ssl is left unticked
            f"{PREFIX}reconcile_window": "45",
            f"{PREFIX}api_timezone": "UTC",
        }
    )
    assert form.validate(), form.errors
    from airflow.models.connection import Connection

    conn = Connection(
        conn_id="qikberry_ui",
        conn_type="qikberry",
        host=form.data["host"],
        password=form.data["password"],
        extra=_saved_extra(form),
    )
    s = ConnectionSettings.from_connection(conn)
    assert (s.sender, s.service, s.timeout, s.rate_limit_per_minute, s.default_region) == (
        "QIKBRY",
        "P",
        2.5,
        120,
        "IN",
    )
    assert (s.verify_ssl, s.check_dlt_sender, s.reconcile_window, s.api_timezone) == (
        False,
        True,
        45.0,
        "UTC",
    )
    assert s.token == "ui-token"
    assert s.base_url == "http://127.0.0.1:8055/api/v2/"


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate_limit_per_minute", "0"), ("rate_limit_per_minute", "1.5"), ("timeout", "soon"), ("timeout", "0")],
)
def test_the_form_refuses_what_the_schema_refuses(request_context: None, field: str, value: str) -> None:
    # Break: drop the NumberRange(minimum) validator -> "0" is accepted, fails.
    form = _form({"conn_id": "qikberry_ui", "conn_type": "qikberry", PREFIX + field: value})
    assert not form.validate()
    assert PREFIX + field in form.errors
