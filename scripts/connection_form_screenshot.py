"""Screenshot the real Airflow UI's "Add Connection" form for the ``qikberry`` type, for the docs.

Starts ``airflow api-server`` in a throwaway home (SimpleAuthManager, everyone admin), opens the form in
headless Chromium through Playwright, picks the Qikberry type and saves two pictures under
``docs/img/``: the standard fields and the extra fields. Not part of ``make test``: it needs Playwright
(``pip install playwright``, any environment) and a Chromium binary (Debian: ``apt-get install chromium``).

Usage: ``.venv/bin/python scripts/connection_form_screenshot.py [--playwright-python /path/to/python]``
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "docs" / "img"

SHOOT = textwrap.dedent(
    """
    import sys
    from playwright.sync_api import sync_playwright

    url, out = sys.argv[1], sys.argv[2]
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=sys.argv[3], args=flags)
        page = browser.new_page(viewport={"width": 1100, "height": 2400})
        page.goto(url + "/connections", wait_until="networkidle")
        page.get_by_role("button", name="Add Connection").click()
        page.wait_for_timeout(1000)
        page.get_by_text("Select Connection Type").click(force=True)
        page.keyboard.type("Qikberry")
        page.wait_for_timeout(800)
        page.keyboard.press("Enter")
        page.wait_for_timeout(1500)
        page.locator("input").nth(1).fill("qikberry_default")
        dialog = page.get_by_role("dialog").first
        dialog.screenshot(path=out + "/connection-form.png")
        page.get_by_text("Extra Fields", exact=True).click(force=True)
        page.wait_for_timeout(1500)
        dialog.screenshot(path=out + "/connection-form-extras.png")
        browser.close()
    """
)


def kill_by_home(home: Path) -> None:
    """Stop every process started with ``AIRFLOW_HOME=home`` (also those re-parented to init)."""
    import psutil

    for proc in psutil.process_iter():
        try:
            if proc.environ().get("AIRFLOW_HOME") == str(home):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--playwright-python", default=sys.executable, help="a Python that has playwright")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="qikberry-ui-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API_AUTH__JWT_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [airflow, "api-server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run([args.playwright_python, "-c", SHOOT, url, str(OUT), args.chromium], check=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        # The api-server's uvicorn workers can outlive their parent (re-parented to init): find them by home.
        kill_by_home(home)
    print(f"wrote {OUT / 'connection-form.png'} and {OUT / 'connection-form-extras.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
