"""The Airflow UI, in headless Debian Chromium, against the real deployment of ``conftest.py``.

What a user of the provider sees: the connection form for "Capillary File Service" with the
provider's own fields, the "Test Connection" verdict against the emulator, and the "Capillary
image" extra link of a finished upload task.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from tests.e2e.airflow_deployment import AirflowDeployment
from tests.e2e.airflow_deployment.upload_dag import UPLOAD_TASK, UploadRun

if TYPE_CHECKING:
    from capillary_emulator import CapillaryEmulator
    from playwright.sync_api import Locator, Page, Route

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HOOK_NAME = "Capillary File Service"


def open_new_capillary_connection_form(page: Page) -> Locator:
    """Open Admin > Connections > Add Connection and choose the Capillary connection type.

    :param page: a signed-in page.
    :return: the dialog holding the form.
    """
    page.goto("/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    type_select = dialog.get_by_role("combobox").first
    type_select.fill("Capillary")
    dialog.get_by_text(HOOK_NAME, exact=True).click()
    dialog.locator("input[name='host']").wait_for()
    return dialog


def fill_capillary_connection(dialog: Locator, *, conn_id: str, host: str, login: str, password: str) -> None:
    """Fill the connection id and the standard fields of the open form.

    :param dialog: the form's dialog.
    :param conn_id: connection id.
    :param host: cluster URL.
    :param login: till user name.
    :param password: plain password.
    """
    dialog.locator("input[name='connection_id']").fill(conn_id)
    dialog.locator("input[name='host']").fill(host)
    dialog.locator("input[name='login']").fill(login)
    dialog.locator("input[name='password']").fill(password)


def save_connection(dialog: Locator) -> None:
    """Save the form and wait for the dialog to close.

    :param dialog: the form's dialog.
    """
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")


def test_connection_form_shows_capillary_fields(ui_page: Page, screenshot_dir: Path) -> None:
    """The form has the relabelled standard fields, hides schema and port, and shows the extras."""
    dialog = open_new_capillary_connection_form(ui_page)

    # Standard fields: relabelled, with placeholders; the secret is a password input.
    host = dialog.locator("input[name='host']")
    assert host.get_attribute("placeholder") == "https://eucrm.cc.capillarytech.com"
    assert dialog.get_by_text("Cluster URL", exact=True).is_visible()
    assert dialog.get_by_text("Till username / OAuth client key", exact=True).is_visible()
    assert dialog.get_by_text("Password / OAuth client secret", exact=True).is_visible()
    assert dialog.locator("input[name='password']").get_attribute("type") == "password"
    assert dialog.locator("input[name='login']").get_attribute("type") == "text"
    assert dialog.locator("input[name='schema']").count() == 0
    assert dialog.locator("input[name='port']").count() == 0
    ui_page.screenshot(path=str(screenshot_dir / "connection-form-standard.png"))

    # Extra fields: auth type is a choice of exactly basic / oauth (default basic).
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    assert dialog.locator("input[name='element_auth_type']").input_value() == "basic"
    auth_field = dialog.locator("[role='group']").filter(has_text="Authentication").first
    auth_field.get_by_role("combobox").click()
    options = ui_page.get_by_role("option")
    assert sorted(options.all_inner_texts()) == ["basic", "oauth"]
    ui_page.screenshot(path=str(screenshot_dir / "connection-form-auth-type.png"))
    options.filter(has_text="basic").click()  # closes the menu, keeps the default

    token_url = dialog.locator("input[name='element_oauth_url']")
    assert token_url.is_visible()
    assert token_url.get_attribute("type") in (None, "text")
    assert dialog.get_by_text("OAuth token URL", exact=True).is_visible()
    assert (
        dialog.locator("input[name='element_oauth_access_header']").input_value() == "X-CAP-API-OAUTH-TOKEN"
    )
    assert dialog.locator("input[name='element_namespace']").input_value() == "rewards"
    assert dialog.locator("input[name='element_md5_prehashed']").get_attribute("type") == "checkbox"
    assert dialog.locator("input[name='element_upload_encoding']").input_value() == "multipart"
    # Task policy (retries, file size, ...) is not in the form: it moved to the task (issue 12).
    assert dialog.get_by_text("Maximum file size (bytes)", exact=True).count() == 0
    dialog.get_by_text("More storage hosts", exact=True).scroll_into_view_if_needed()
    ui_page.screenshot(path=str(screenshot_dir / "connection-form-extras.png"))


def _send_unset_port_as_null(route: Route) -> None:
    """Work around apache/airflow#73298 (Airflow 3.3.2): the Test button sends an unset port as 0.

    The UI builds the test request with ``port: Number(connection.port)``, and ``Number(null)`` is
    0; the API then sees a port that differs from the stored NULL and refuses to reuse the stored
    (masked) password: "400 The host or port to test differs from the stored connection". That hits
    every connection without a port (Capillary's port is part of the cluster URL). The upstream fix
    makes the API treat 0 as unset; this handler does the same in the request, changing nothing else.

    :param route: the intercepted ``POST /api/v2/connections/test``.
    """
    body = json.loads(route.request.post_data or "{}")
    if body.get("port") == 0:
        body["port"] = None
    route.continue_(post_data=json.dumps(body))


def _test_saved_connection(page: Page, conn_id: str) -> tuple[Locator, dict[str, Any]]:
    """Click "Test Connection" on a saved connection's row; return the toast and the API answer.

    :param page: a signed-in page on the connections list.
    :param conn_id: the connection to test.
    :return: the result toast and the request/response the UI exchanged with the API.
    """
    page.route("**/api/v2/connections/test", _send_unset_port_as_null)
    row = page.get_by_role("row").filter(has_text=conn_id)
    with page.expect_response(lambda r: "/api/v2/connections/" in r.url and "test" in r.url) as answer:
        row.get_by_role("button", name="Test Connection").click()
    response = answer.value
    exchange = {
        "url": response.url,
        "status": response.status,
        "request": response.request.post_data,
        "response": response.text(),
    }
    toast = page.get_by_role("status").filter(has_text=re.compile("Test Connection (Successful|Failed)"))
    toast.first.wait_for(timeout=60_000)
    return toast.first, exchange


@pytest.mark.parametrize(
    ("conn_id", "password", "verdict", "message"),
    [
        pytest.param(
            "capillary_right_password",
            "demo-password",
            "Test Connection Successful",
            "ok",
            id="right-password",
        ),
        pytest.param(
            "capillary_wrong_password",
            "wrong-password",
            "Test Connection Failed",
            "credentials refused",
            id="wrong-password",
        ),
    ],
)
def test_connection_test_button(
    ui_page: Page,
    e2e_emulator: CapillaryEmulator,
    airflow_deployment: AirflowDeployment,
    screenshot_dir: Path,
    conn_id: str,
    password: str,
    verdict: str,
    message: str,
) -> None:
    """A connection saved through the form is tested against the emulator by the Test button."""
    airflow_deployment.client.request("DELETE", f"/connections/{conn_id}", expect=(204, 404))
    dialog = open_new_capillary_connection_form(ui_page)
    fill_capillary_connection(
        dialog, conn_id=conn_id, host=e2e_emulator.base_url, login="demo", password=password
    )
    if verdict == "Test Connection Successful":
        ui_page.screenshot(path=str(screenshot_dir / "connection-form-filled.png"))
    save_connection(dialog)
    saved = airflow_deployment.client.get(f"/connections/{conn_id}")
    assert (saved["conn_type"], saved["host"], saved["login"]) == ("capillary", e2e_emulator.base_url, "demo")

    ui_page.goto("/connections")
    toast, exchange = _test_saved_connection(ui_page, conn_id)
    text = toast.inner_text()
    assert verdict in text, f"{exchange['status']} {exchange['request']} -> {exchange['response']}"
    assert message in text
    assert password not in text
    ui_page.wait_for_timeout(1000)  # let the toast finish sliding in
    ui_page.screenshot(path=str(screenshot_dir / f"connection-test-{conn_id}.png"))


def test_finished_upload_task_shows_capillary_image_link(
    ui_page: Page, upload_run: UploadRun, airflow_deployment: AirflowDeployment, screenshot_dir: Path
) -> None:
    """The finished upload's Details tab offers the "Capillary image" link, and it opens the image."""
    record = airflow_deployment.client.xcom(upload_run.dag_id, upload_run.run_id, UPLOAD_TASK)
    ui_page.goto(f"/dags/{upload_run.dag_id}/runs/{quote(upload_run.run_id, safe='')}/tasks/{UPLOAD_TASK}")
    ui_page.get_by_role("link", name="Details", exact=True).click()
    link = ui_page.get_by_role("link", name="Capillary image", exact=True)
    link.wait_for(timeout=60_000)
    assert link.get_attribute("href") == record["secure_file_path"]
    ui_page.screenshot(path=str(screenshot_dir / "task-extra-link.png"))

    with ui_page.context.expect_page() as opened:
        link.click()
    image_page = opened.value
    image_page.wait_for_load_state()
    assert image_page.url == record["secure_file_path"]
    assert image_page.evaluate("document.contentType") == "image/png"
    image_page.close()
