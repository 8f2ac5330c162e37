"""The admin panel in a real browser: Debian's Chromium, driven by Selenium
through Debian's chromedriver, against a running keyledger.

Usage: panel_browser.py  (everything comes in the environment)
  KL_BASE            http://127.0.0.1:PORT
  KL_PANEL           the panel's path, /admin
  KL_LICENSE_ID      a license of the tenant, never activated
  KL_LICENSE_KEY     its key
  KL_OTHER_LICENSE   the id of another tenant's license
  KL_ADMIN_INVITE    the admin's invitation path (/invitation/<token>)
  KL_ADMIN_EMAIL
  KL_VIEWER_INVITE   the viewer's invitation path
  KL_VIEWER_EMAIL
  KL_BLOCK_AFTER     wrong passwords after which the address is blocked
  KL_SCREENSHOTS     a directory to save a screenshot of each page in
  KL_AXE             the path of axe.min.js (axe-core, vendored)
  KL_OPERATOR_TOKEN  the server's operator token
  KL_TENANT_ID       the id of the tenant of KL_LICENSE_ID

Prints one line per step; exits non-zero at the first failure, naming it.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import time
from pathlib import Path

import requests
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["KL_BASE"]
PANEL = BASE + os.environ["KL_PANEL"]
LICENSE_ID = os.environ["KL_LICENSE_ID"]
LICENSE_KEY = os.environ["KL_LICENSE_KEY"]
SHOTS = Path(os.environ["KL_SCREENSHOTS"])
AXE = Path(os.environ["KL_AXE"]).read_text()
PASSWORD = "a long enough password"


def check(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


def step(message):
    print(f"ok: {message}", flush=True)


def browser():
    for path in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        check(os.path.exists(path), f"{path} is missing: scripts/test installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(driver, condition, what, seconds=15):
    try:
        # htmx swaps fragments, and a form's answer replaces the page, while
        # the test reads them: an element gone stale, missing or detached
        # mid-read is read again at the next poll.
        ignored = (StaleElementReferenceException, NoSuchElementException, WebDriverException)
        return WebDriverWait(driver, seconds, poll_frequency=0.2, ignored_exceptions=ignored).until(condition)
    except TimeoutException:
        raise SystemExit(f"FAILED: waited {seconds} s for {what}; the page was:\n{driver.page_source[:3000]}")


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def accessible(driver, name):
    """axe-core on the page as it stands: no serious or critical violation."""
    driver.execute_script(AXE)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(JSON.stringify(r.violations)))"
        ".catch(e => done(JSON.stringify([{impact: 'critical', id: 'axe-error', help: String(e), nodes: []}])));"
    )
    violations = [v for v in json.loads(result) if v.get("impact") in ("serious", "critical")]
    summary = [(v["id"], v["help"], [n.get("target") for n in v.get("nodes", [])][:3]) for v in violations]
    check(not violations, f"{name}: accessibility violations {summary}")
    step(f"{name}: axe-core finds no serious violation")
    phone_width(driver, name)


def shoot(driver, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def phone_width(driver, name):
    driver.set_window_size(390, 844)
    time.sleep(0.3)
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 1, f"{name} scrolls sideways at a phone's width by {overflow}px")
    shoot(driver, f"{name}-phone")
    driver.set_window_size(1280, 900)
    step(f"{name}: fits a phone's width")


def sign_in(driver, email, password, code=None):
    driver.get(PANEL + "/sign-in")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    if code is not None:
        driver.find_element(By.ID, "code").send_keys(code)
    driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()


def totp(secret, step):
    """RFC 6238's code of a 30-second step, as an authenticator app makes it."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def set_up_totp(driver):
    """Turns two-factor sign-in on from the account page: the secret and the step confirmed."""
    driver.get(PANEL + "/account")
    check(driver.find_element(By.ID, "totp-status").text == "off", "two-factor sign-in starts off")
    driver.find_element(By.XPATH, "//form[contains(@action, '/account/totp')]/button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "totp-secret"), "the new secret")
    check(driver.find_elements(By.CSS_SELECTOR, "svg.qr[role=img]"), "a QR code of the secret")
    accessible(driver, "totp-setup")
    secret = driver.find_element(By.ID, "totp-secret").text.strip()
    step = int(time.time()) // 30
    driver.find_element(By.ID, "code").send_keys(totp(secret, step))
    driver.find_element(By.XPATH, "//form[contains(@action, '/confirm')]/button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "totp-status") and d.find_element(By.ID, "totp-status").text == "on", "two-factor sign-in on")
    return secret, step


def accept_invitation(driver, path, email):
    driver.get(PANEL + path)
    check(email in text(driver), f"the invitation names {email}")
    accessible(driver, "invitation")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "confirm").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    wait_for(driver, lambda d: "Your password is set" in text(d), "the password to be set")
    step(f"{email} accepted the invitation")


def session_of(driver):
    """The browser's cookies, for a request made outside it."""
    return {cookie["name"]: cookie["value"] for cookie in driver.get_cookies()}


def client(path, body):
    return requests.post(BASE + path, json=body, timeout=10)


def main():
    driver = browser()
    try:
        run(driver)
    finally:
        driver.quit()


def run(driver):
    admin, viewer = os.environ["KL_ADMIN_EMAIL"], os.environ["KL_VIEWER_EMAIL"]
    license_page = f"{PANEL}/licenses/{LICENSE_ID}"

    # A page without a session sends the browser to sign in.
    driver.get(PANEL + "/")
    wait_for(driver, lambda d: d.current_url.endswith("/sign-in"), "the redirect to sign in")
    shoot(driver, "sign-in")
    accessible(driver, "sign-in")

    accept_invitation(driver, os.environ["KL_ADMIN_INVITE"], admin)
    sign_in(driver, admin, "not the password at all")
    wait_for(driver, lambda d: "Wrong email or password" in text(d), "the wrong password refused")
    step("a wrong password is refused")

    sign_in(driver, admin, PASSWORD)
    wait_for(driver, lambda d: d.find_elements(By.TAG_NAME, "h1") and "Overview" in d.find_element(By.TAG_NAME, "h1").text, "the overview")
    check(LICENSE_KEY not in text(driver), "the overview shows figures, not keys")
    shoot(driver, "overview")
    accessible(driver, "overview")
    step("the admin signed in and sees the overview")

    # Two-factor sign-in: turned on with a code from the new secret; then
    # the password alone is refused and the password with a code is not.
    secret, confirmed = set_up_totp(driver)
    accessible(driver, "account")
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(driver, lambda d: d.current_url.endswith("/sign-in"), "the admin signed out")
    sign_in(driver, admin, PASSWORD)
    wait_for(driver, lambda d: "Wrong email or password" in text(d), "the password alone refused")
    sign_in(driver, admin, PASSWORD, totp(secret, confirmed))
    wait_for(driver, lambda d: "Wrong email or password" in text(d), "a code used already refused")
    sign_in(driver, admin, PASSWORD, totp(secret, confirmed + 1))
    wait_for(driver, lambda d: d.find_elements(By.TAG_NAME, "h1") and "Overview" in d.find_element(By.TAG_NAME, "h1").text, "the overview after a code")
    step("with two-factor sign-in on, the password alone and a used code are refused, a fresh code signs in")

    # The catalog: a product, then a license of it, from the panel.
    driver.get(PANEL + "/products")
    driver.find_element(By.ID, "name").send_keys("Desk App")
    driver.find_element(By.ID, "code").send_keys("desk-app")
    driver.find_element(By.ID, "features").send_keys("export, print")
    driver.find_element(By.XPATH, "//form[.//input[@id='name']]//button").click()
    wait_for(driver, lambda d: "desk-app" in d.find_element(By.CSS_SELECTOR, "main table").text, "the product in the list")
    driver.find_element(By.ID, "code").send_keys("desk-app")
    driver.find_element(By.ID, "name").send_keys("Again")
    driver.find_element(By.XPATH, "//form[.//input[@id='name']]//button").click()
    wait_for(driver, lambda d: "another product has this code" in text(d), "a taken code refused")
    shoot(driver, "products")
    accessible(driver, "products")
    driver.find_element(By.ID, "seats").clear()
    driver.find_element(By.ID, "seats").send_keys("3")
    driver.find_element(By.XPATH, "//form[.//select[@id='product']]//button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "license-status"), "the new license's page")
    new_license_page = driver.current_url
    check(driver.find_element(By.ID, "license-status").text == "generated", "the new license is not activated")
    check("0 of 3 taken" in text(driver), "the new license has three seats")
    step("a product and a license of it were created in the panel")

    # The product's own page: features, its policy, a release.
    driver.get(PANEL + "/products")
    driver.find_element(By.LINK_TEXT, "Desk App").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "product-features"), "the product's page")
    features = driver.find_element(By.ID, "features")
    features.clear()
    features.send_keys("export, print, sync")
    driver.find_element(By.XPATH, "//form[contains(@action, '/features')]//button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "product-features").text == "export, print, sync", "the features saved")
    heartbeat = driver.find_element(By.ID, "heartbeat")
    heartbeat.clear()
    heartbeat.send_keys("600")
    driver.find_element(By.CSS_SELECTOR, "#overage option[value='1.5']").click()
    driver.find_element(By.ID, "transfers").send_keys("3")
    driver.find_element(By.ID, "transfer-days").send_keys("30")
    driver.find_element(By.CSS_SELECTOR, "#policy button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "product-heartbeat").text == "every 600 s", "the policy saved")
    check(driver.find_element(By.ID, "transfers").get_attribute("value") == "3", "the transfer limit saved")
    driver.find_element(By.ID, "transfers").clear()
    driver.find_element(By.CSS_SELECTOR, "#policy button").click()
    wait_for(driver, lambda d: "give both the number and the days" in text(d), "half a transfer limit refused")
    driver.back()
    driver.refresh()
    driver.find_element(By.ID, "version").send_keys("2.0.0")
    driver.find_element(By.ID, "mandatory").click()
    driver.find_element(By.CSS_SELECTOR, "#publish button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "releases") and "2.0.0" in d.find_element(By.ID, "releases").text, "the release listed")
    shoot(driver, "product")
    accessible(driver, "product")
    step("a product's features, policy and releases are changed from its page")

    # The resource pool: added, retired, allocated to a license and released.
    driver.get(PANEL + "/resources")
    for identifier in ("srv-1", "srv-2"):
        driver.find_element(By.ID, "type").send_keys("server")
        driver.find_element(By.ID, "identifier").send_keys(identifier)
        driver.find_element(By.XPATH, "//form[.//input[@id='identifier']]//button").click()
        wait_for(driver, lambda d: d.find_elements(By.ID, "resources") and identifier in d.find_element(By.ID, "resources").text, f"{identifier} listed")
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Retire srv-2']").click()
    wait_for(driver, lambda d: "retired" in d.find_element(By.ID, "resources").text, "srv-2 retired")
    shoot(driver, "resources")
    accessible(driver, "resources")
    driver.get(new_license_page)
    driver.find_element(By.XPATH, "//form[contains(@action, '/resources/allocate')]//button").click()
    wait_for(driver, lambda d: "srv-1" in d.find_element(By.ID, "held-resources").text, "srv-1 allocated to the license")
    driver.find_element(By.XPATH, "//form[contains(@action, '/resources/release')]//button").click()
    wait_for(driver, lambda d: "holds no resource" in d.find_element(By.ID, "held-resources").text, "the license's resources released")
    step("resources are added, retired, allocated to a license and released")

    # Anomalies: the hopping license is listed, resolved, reinstated.
    driver.get(PANEL + "/anomalies")
    check("license_hopping" in driver.find_element(By.ID, "anomalies").text, "the hopping anomaly is listed")
    hopper = os.environ["KL_HOPPER_KEY"]
    check(hopper in driver.find_element(By.ID, "suspended").find_element(By.XPATH, "..").text, "the hopper is suspended by the detector")
    shoot(driver, "anomalies")
    accessible(driver, "anomalies")
    driver.find_element(By.CSS_SELECTOR, "#anomalies input[name=note]").send_keys("moved offices")
    driver.find_element(By.CSS_SELECTOR, "#anomalies button").click()
    wait_for(driver, lambda d: "No anomaly." in text(d), "the anomaly to be resolved")
    driver.find_element(By.XPATH, "//section[@aria-labelledby='suspended']//button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "license-status"), "the reinstated license's page")
    check(driver.find_element(By.ID, "license-status").text != "suspended", "the hopper is reinstated")
    step("an anomaly is resolved and the license the detector suspended is reinstated")

    # Customers: searched as the person types, and their page.
    driver.get(PANEL + "/customers")
    search = driver.find_element(By.ID, "customer-q")
    search.send_keys("northw")
    wait_for(driver, lambda d: "Northwind Traders" in d.find_element(By.ID, "customer-results").text, "the customer found as one types")
    search.send_keys("zzz")
    wait_for(driver, lambda d: "No customer matches" in d.find_element(By.ID, "customer-results").text, "no match")
    search.clear()
    search.send_keys("it@northwind")
    wait_for(driver, lambda d: "Northwind Traders" in d.find_element(By.ID, "customer-results").text, "the customer found by email")
    shoot(driver, "customers")
    accessible(driver, "customers")
    driver.find_element(By.ID, "global-search").send_keys("northwind")
    driver.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait_for(driver, lambda d: LICENSE_KEY in text(d), "the global search to find the customer's license")
    driver.get(PANEL + "/customers?q=northw")
    driver.find_element(By.LINK_TEXT, "Northwind Traders").click()
    wait_for(driver, lambda d: LICENSE_KEY in text(d), "the customer's licenses")
    accessible(driver, "customer")
    step("customers are found as one types, with their licenses")

    # Webhooks: the endpoint, a test sent and redelivered, the secret rotated.
    driver.get(PANEL + "/webhooks")
    webhook_url = os.environ["KL_WEBHOOK_URL"]
    driver.find_element(By.LINK_TEXT, webhook_url).click()
    driver.find_element(By.XPATH, "//form[contains(@action, '/test')]/button").click()
    def delivered(d):
        d.refresh()
        return "webhook.test — succeeded" in d.find_element(By.ID, "deliveries").text
    wait_for(driver, delivered, "the test delivery to succeed", seconds=30)
    check("HTTP 2" in driver.find_element(By.ID, "deliveries").text, "the attempt's status is shown")
    driver.find_element(By.XPATH, "//form[contains(@action, '/redeliver')]/button").click()
    def redelivered(d):
        d.refresh()
        return d.find_element(By.ID, "deliveries").text.count("Attempt 2") >= 1
    wait_for(driver, redelivered, "the redelivery's attempt", seconds=30)
    shoot(driver, "webhook")
    accessible(driver, "webhook")
    driver.find_element(By.XPATH, "//form[contains(@action, '/rotate')]/button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "new-secret"), "the new secret")
    check(driver.find_element(By.ID, "new-secret").text.startswith("whsec_"), "a Standard Webhooks secret")
    step("a webhook's test is sent and redelivered, its attempts shown, its secret rotated")

    # A second endpoint: created (secret shown once), switched off, deleted.
    driver.get(PANEL + "/webhooks")
    accessible(driver, "webhooks")
    driver.find_element(By.ID, "url").send_keys("http://127.0.0.1:9/not-a-webhook")
    driver.find_element(By.ID, "events").clear()
    driver.find_element(By.ID, "events").send_keys("license.nonsense.event")
    driver.find_element(By.XPATH, "//form[.//input[@id='url']]//button").click()
    wait_for(driver, lambda d: "is not an event name" in text(d), "a bad event name refused")
    driver.get(PANEL + "/webhooks")
    driver.find_element(By.ID, "url").send_keys(webhook_url + "/second")
    driver.find_element(By.ID, "events").clear()
    driver.find_element(By.ID, "events").send_keys("license.*")
    driver.find_element(By.XPATH, "//form[.//input[@id='url']]//button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "new-secret"), "the new endpoint's secret")
    check(driver.find_element(By.ID, "new-secret").text.startswith("whsec_"), "a Standard Webhooks secret")
    driver.find_element(By.LINK_TEXT, "To the endpoint").click()
    driver.find_element(By.XPATH, "//form[contains(@action, '/disable')]/button").click()
    wait_for(driver, lambda d: "disabled" in text(d) and d.find_elements(By.XPATH, "//form[contains(@action, '/enable')]"), "the endpoint switched off")
    driver.find_element(By.XPATH, "//form[contains(@action, '/delete')]/button").click()
    driver.find_element(By.XPATH, "//button[text()='Delete the endpoint']").click()
    wait_for(driver, lambda d: d.current_url.endswith("/webhooks") and "/second" not in text(d), "the endpoint deleted")
    step("a webhook endpoint is created (a bad event refused), switched off and deleted")

    # Keys: an API key issued (shown once) and revoked; the signing key
    # rotated and the old one retired.
    driver.get(PANEL + "/keys")
    driver.find_element(By.CSS_SELECTOR, "#role option[value='admin']").click()
    driver.find_element(By.ID, "key-name").send_keys("panel test key")
    driver.find_element(By.XPATH, "//form[.//input[@id='key-name']]//button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "new-key"), "the new key shown once")
    new_key = driver.find_element(By.ID, "new-key").text
    check(new_key.startswith("klk_"), f"an API key: {new_key[:8]}")
    works = requests.get(BASE + "/api/v1/signing-keys", headers={"Authorization": f"Bearer {new_key}"}, timeout=10)
    check(works.status_code == 200, f"the new key works: {works.status_code}")
    driver.get(PANEL + "/keys")
    check(new_key not in driver.page_source, "the key is never shown again")
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Revoke panel test key']").click()
    wait_for(driver, lambda d: "panel test key" not in d.find_element(By.ID, "api-key-list").text, "the key revoked")
    revoked = requests.get(BASE + "/api/v1/signing-keys", headers={"Authorization": f"Bearer {new_key}"}, timeout=10)
    check(revoked.status_code == 401, f"the revoked key is refused: {revoked.status_code}")
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Rotate the signing key']").click()
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#signing-key-list tbody tr")) == 2, "a second signing key")
    driver.find_element(By.CSS_SELECTOR, "#signing-key-list button").click()
    wait_for(driver, lambda d: "retired" in d.find_element(By.ID, "signing-key-list").text, "the old key retired")
    shoot(driver, "keys")
    accessible(driver, "keys")
    step("an API key is issued, shown once and revoked; the signing key is rotated and the old one retired")

    driver.find_element(By.CSS_SELECTOR, "button[aria-label^='Issue a new system key']").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "new-system-key"), "the new system key")
    system_key = driver.find_element(By.ID, "new-system-key").text
    stats = requests.get(BASE + "/api/monitoring/live-stats", headers={"X-API-Key": system_key}, timeout=10)
    check(stats.status_code == 200, f"the system key works with the V2 License Server API: {stats.status_code} {stats.text[:200]}")
    driver.get(PANEL + "/keys")
    check(system_key not in driver.page_source, "the system key is never shown again")
    step("a system key is issued from the panel and works with the V2 License Server API")

    driver.get(PANEL + "/staff")
    check("ana@example.com" in driver.find_element(By.ID, "staff-list").text, "the admin sees the staff")
    driver.find_element(By.ID, "email").send_keys("sam@example.com")
    driver.find_element(By.CSS_SELECTOR, "#role option[value='viewer']").click()
    driver.find_element(By.XPATH, "//form[.//input[@id='email']]//button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "invitation-link"), "the invitation link")
    link = driver.find_element(By.ID, "invitation-link").text
    check(requests.get(BASE + link, timeout=10).status_code == 200, "the link opens the invitation")
    driver.get(PANEL + "/staff")
    accessible(driver, "staff")
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Remove sam@example.com']").click()
    wait_for(driver, lambda d: "sam@example.com" not in d.find_element(By.ID, "staff-list").text, "the invited person removed")
    check(requests.get(BASE + link, timeout=10).status_code == 404, "the removed person's invitation no longer opens")
    step("an admin invites staff from the panel (the link shown once) and removes them")

    # Leads: create, import (a bad file refused whole, by line), export,
    # edit, delete: the document's HTML routes.
    driver.get(PANEL + "/leads/")
    check("No lead yet" in text(driver), "no lead at first")
    driver.find_element(By.LINK_TEXT, "New lead").click()
    driver.find_element(By.ID, "name").send_keys("North University")
    driver.find_element(By.ID, "type").send_keys("university")
    driver.find_element(By.ID, "contact_name").send_keys("Ana Reyes")
    driver.find_element(By.ID, "contact_email").send_keys("ana.reyes@north.example")
    driver.find_element(By.CSS_SELECTOR, "form.stack button").click()
    wait_for(driver, lambda d: "North University" in d.find_element(By.ID, "leads").text, "the new lead in the list")
    bad_csv = SHOTS / "bad-leads.csv"
    bad_csv.write_text("name,type,contact_name,contact_email\nSouth College,university,Bo,bo@south.example\n,company,,\nWest Agency,government,Cy,not-an-email\n")
    driver.find_element(By.LINK_TEXT, "Import CSV").click()
    driver.find_element(By.ID, "csv").send_keys(str(bad_csv.resolve()))
    driver.find_element(By.CSS_SELECTOR, "form.stack button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "bad-rows"), "the bad rows listed")
    bad_rows = driver.find_element(By.ID, "bad-rows").text
    check("Line 3, name" in bad_rows and "Line 4, contact_email" in bad_rows and "Line 2" not in bad_rows, f"bad rows by line: {bad_rows}")
    accessible(driver, "leads-import")
    good_csv = SHOTS / "leads.csv"
    good_csv.write_text("name,type,contact_name,contact_email\nSouth College,university,Bo,bo@south.example\n\"East, Ltd\",company,,\n")
    driver.find_element(By.ID, "csv").send_keys(str(good_csv.resolve()))
    driver.find_element(By.CSS_SELECTOR, "form.stack button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "leads") and "East, Ltd" in d.find_element(By.ID, "leads").text, "the imported leads")
    check("South College" in text(driver), "both rows imported")
    exported = requests.get(PANEL + "/leads/export", cookies=session_of(driver), timeout=10)
    check(exported.status_code == 200 and exported.text.startswith("id,name,type"), f"the export: {exported.status_code}")
    check('"East, Ltd"' in exported.text and "ana.reyes@north.example" in exported.text, f"the export holds the leads: {exported.text}")
    driver.find_element(By.XPATH, "//tr[td[text()='North University']]//a[text()='Edit']").click()
    name = driver.find_element(By.ID, "name")
    name.clear()
    name.send_keys("North State University")
    driver.find_element(By.CSS_SELECTOR, "form.stack button").click()
    wait_for(driver, lambda d: "North State University" in d.find_element(By.ID, "leads").text, "the renamed lead")
    driver.find_element(By.XPATH, "//tr[td[text()='South College']]//button").click()
    wait_for(driver, lambda d: "South College" not in d.find_element(By.ID, "leads").text, "the deleted lead gone")
    shoot(driver, "leads")
    accessible(driver, "leads")
    step("leads are created, imported (bad rows named by line, nothing half-imported), exported, edited and deleted")

    driver.get(PANEL + "/licenses?status=generated")
    check(LICENSE_KEY in text(driver), "the licenses list shows the license among those not activated")
    driver.get(PANEL + "/licenses?status=suspended")
    check(LICENSE_KEY not in text(driver), "the list filters by status")
    driver.get(PANEL + "/licenses?q=" + LICENSE_KEY[:9])
    check(LICENSE_KEY in text(driver), "the list searches by part of a key")
    shoot(driver, "licenses")
    accessible(driver, "licenses")
    driver.find_element(By.ID, "global-search").send_keys(LICENSE_KEY[:9])
    driver.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait_for(driver, lambda d: LICENSE_KEY in d.find_element(By.XPATH, "//section[@aria-labelledby='found-licenses']").text, "the global search to find the key")
    accessible(driver, "search")
    step("the list searches and filters; the global search finds a key")

    driver.get(license_page)
    check(driver.find_element(By.ID, "license-status").text == "generated", "the license is not activated yet")
    check("No device holds a seat" in driver.find_element(By.ID, "devices").text, "no device yet")
    driver.execute_script("window.__same_page = true")
    activated = client("/api/v1/fastrLicense/activate", {"licenseKey": LICENSE_KEY, "machineId": "browser-test-machine", "machineName": "Front desk"})
    check(activated.status_code == 200, f"the client activated: {activated.status_code} {activated.text}")
    wait_for(driver, lambda d: "Front desk" in d.find_element(By.ID, "devices").text, "the device to appear without a reload")
    check(driver.execute_script("return window.__same_page === true"), "the page was not reloaded")
    step("a device activated by a client appears on the license page without a reload")
    driver.find_element(By.ID, "global-search").send_keys("front d")
    driver.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait_for(driver, lambda d: "Front desk" in d.find_element(By.XPATH, "//section[@aria-labelledby='found-devices']").text, "the global search to find the device")
    shoot(driver, "search")
    driver.get(license_page)
    step("the global search finds the device by its name")

    # The device's own actions: block (it gives its seat up and can't come
    # back), unblock, and the quick edit of seats and expiry.
    driver.find_element(By.CSS_SELECTOR, "#devices button[aria-label^='Block']").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "blocked") and "No device holds a seat" in d.find_element(By.ID, "devices").text, "the device blocked")
    blocked = client("/api/v1/fastrLicense/activate", {"licenseKey": LICENSE_KEY, "machineId": "browser-test-machine", "machineName": "Front desk"})
    check(blocked.status_code >= 400 or blocked.json().get("isValid") is False, f"a blocked device can't activate: {blocked.status_code} {blocked.text}")
    driver.find_element(By.CSS_SELECTOR, "#blocked button").click()
    wait_for(driver, lambda d: not d.find_elements(By.ID, "blocked"), "the device unblocked")
    again = client("/api/v1/fastrLicense/activate", {"licenseKey": LICENSE_KEY, "machineId": "browser-test-machine", "machineName": "Front desk"})
    check(again.status_code == 200, f"the unblocked device activates again: {again.status_code} {again.text}")
    seats = driver.find_element(By.ID, "seats")
    seats.clear()
    seats.send_keys("5")
    driver.execute_script("document.getElementById('expires').value = '2031-01-31'")
    driver.find_element(By.CSS_SELECTOR, "#quick-edit button").click()
    wait_for(driver, lambda d: "1 of 5 taken" in text(d) and "2031-01-31" in text(d), "the quick edit saved")
    step("a device is blocked and unblocked, and seats and expiry are edited, from the license's page")

    driver.find_element(By.XPATH, "//form[contains(@action, '/suspend')]/button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "license-status").text == "suspended", "the license to be suspended")
    validated = client("/api/v1/fastrLicense/validate", {"licenseKey": LICENSE_KEY, "machineId": "browser-test-machine"})
    check(validated.status_code >= 400 or validated.json().get("isValid") is False,
          f"the client's next validate is refused: {validated.status_code} {validated.text}")
    step(f"suspended in the panel, the client's validate is refused ({validated.status_code})")

    check("verified" in driver.find_element(By.ID, "chain").get_attribute("class"), "the hash chain is verified")
    timeline = driver.find_elements(By.CSS_SELECTOR, "ol.timeline li")
    kinds = [item.find_element(By.CSS_SELECTOR, ".what").text for item in timeline]
    check(kinds[:1] == ["LicenseGenerated"] and "LicenseActivated" in kinds and "LicenseSuspended" in kinds, f"the timeline: {kinds}")
    check("staff member" in timeline[kinds.index("LicenseSuspended")].text, "the suspension names the staff member")
    timeline[0].find_element(By.TAG_NAME, "a").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "state-at-status"), "the state at the first event")
    check(driver.find_element(By.ID, "state-at-status").text == "generated", "at its first event the license was not activated")
    shoot(driver, "license")
    accessible(driver, "license")
    step("the timeline shows every event with its actor, and the state at an earlier instant")

    # A change posted without the session's form token is refused.
    cookies = session_of(driver)
    forged = requests.post(license_page + "/reinstate", data={}, cookies=cookies, timeout=10, allow_redirects=False)
    check(forged.status_code == 403, f"a form without its CSRF token is refused: {forged.status_code}")
    forged = requests.post(license_page + "/reinstate", data={"csrf": "x" * 43}, cookies=cookies, timeout=10, allow_redirects=False)
    check(forged.status_code == 403, f"a form with a wrong CSRF token is refused: {forged.status_code}")
    driver.get(license_page)
    check(driver.find_element(By.ID, "license-status").text == "suspended", "the forged reinstate changed nothing")
    step("a form without its CSRF token is refused and changes nothing")

    driver.get(f"{PANEL}/licenses/{os.environ['KL_OTHER_LICENSE']}")
    check("There is no such license" in text(driver), "another tenant's license is not found")
    step("another tenant's license is not found")

    # The overview's charts count the client's activations and validations
    # (written every few seconds), each an image with a text alternative.
    def charted(d):
        d.get(PANEL + "/")
        day = d.find_element(By.ID, "validations-day-title").text
        activations = d.find_element(By.ID, "activations-month-title").text
        return "(0)" not in day and "(0)" not in activations
    wait_for(driver, charted, "the charts to count the client's calls", seconds=30)
    charts = driver.find_elements(By.CSS_SELECTOR, ".chart svg[role=img]")
    check(len(charts) == 4, f"four charts: {len(charts)}")
    check(all("in all" in chart.get_attribute("aria-label") for chart in charts[:1]), "a chart says what it shows")
    shoot(driver, "overview-charts")
    accessible(driver, "overview with charts")
    step("the overview charts activations and validations over the last day and month")

    # The license's own actions: reinstate, a fresh offline token for a
    # machine holding a seat (refused for one that holds none), a renewal.
    driver.get(license_page)
    driver.find_element(By.XPATH, "//form[contains(@action, '/reinstate')]/button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "license-status").text == "active", "the license reinstated")
    driver.find_element(By.ID, "machine").send_keys("browser-test-machine")
    driver.find_element(By.CSS_SELECTOR, "#offline-token button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "token"), "the offline token")
    token = driver.find_element(By.ID, "token").get_attribute("value").strip()
    check(token.count(".") == 2 and len(token) > 100, f"a signed token (a JWS): {token[:20]}")
    accessible(driver, "offline-token")
    driver.get(license_page)
    driver.find_element(By.ID, "machine").send_keys("a-machine-without-a-seat")
    driver.find_element(By.CSS_SELECTOR, "#offline-token button").click()
    wait_for(driver, lambda d: "No token for this machine" in text(d), "a machine without a seat refused")
    driver.get(license_page)
    driver.find_element(By.XPATH, "//form[contains(@action, '/renew')]/button").click()
    wait_for(driver, lambda d: "2036-" in text(d) or "2035-" in text(d), "the renewal to move the expiry on by its term")
    step("the license page reinstates, issues an offline token to a seated machine only, and renews")

    # Bulk select on the list: switched off, off again (unchanged, said
    # why), and on; then a license deleted after a confirmation.
    def bulk(action):
        driver.get(PANEL + "/licenses")
        driver.find_element(By.CSS_SELECTOR, f"input[aria-label='Select {LICENSE_KEY}']").click()
        driver.find_element(By.CSS_SELECTOR, f"#bulk button[value={action}]").click()
        wait_for(driver, lambda d: d.find_elements(By.ID, "bulk-outcome"), f"the bulk {action}")
        return driver.find_element(By.ID, "bulk-outcome").text, text(driver)
    outcome, _ = bulk("deactivate")
    check(outcome.startswith("1 licenses deactivated"), f"bulk deactivate: {outcome}")
    accessible(driver, "bulk-outcome")
    outcome, page = bulk("deactivate")
    check(outcome.startswith("0 ") and "already suspended" in page, f"a second deactivate changes nothing: {outcome}")
    outcome, _ = bulk("activate")
    check(outcome.startswith("1 licenses activated"), f"bulk activate: {outcome}")
    driver.get(PANEL + "/licenses")
    driver.find_element(By.CSS_SELECTOR, f"input[aria-label='Select {LICENSE_KEY}']").click()
    driver.find_element(By.CSS_SELECTOR, "#bulk button[value=delete]").click()
    wait_for(driver, lambda d: "Delete 1 licenses?" in text(d), "a bulk deletion to be confirmed first")
    accessible(driver, "bulk-delete-confirmation")
    driver.find_element(By.LINK_TEXT, "Keep them").click()
    driver.get(license_page)
    check(driver.find_element(By.ID, "license-status").text == "active", "the license is active again")
    driver.get(new_license_page)
    driver.find_element(By.XPATH, "//form[contains(@action, '/delete')]/button").click()
    wait_for(driver, lambda d: "Delete the license" in text(d), "the deletion to be confirmed first")
    accessible(driver, "delete-confirmation")
    driver.find_element(By.XPATH, "//button[text()='Delete the license']").click()
    wait_for(driver, lambda d: d.current_url.endswith("/licenses"), "the list after the deletion")
    driver.get(new_license_page)
    check("There is no such license" in text(driver), "the deleted license is gone")
    step("licenses are switched off and on in bulk, and one is deleted after a confirmation")

    driver.get(PANEL + "/")
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(driver, lambda d: d.current_url.endswith("/sign-in"), "sign-out to land on the sign-in page")
    driver.get(license_page)
    wait_for(driver, lambda d: d.current_url.endswith("/sign-in"), "the old session to be gone")
    stale = requests.get(license_page, cookies=cookies, timeout=10, allow_redirects=False)
    check(stale.status_code in (302, 303, 307), f"the signed-out session opens nothing: {stale.status_code}")
    step("signed out, the session opens nothing")

    accept_invitation(driver, os.environ["KL_VIEWER_INVITE"], viewer)
    sign_in(driver, viewer, PASSWORD)
    wait_for(driver, lambda d: "Overview" in text(d), "the viewer's overview")
    driver.get(license_page)
    check(not driver.find_elements(By.CSS_SELECTOR, "div.actions button"), "a viewer sees no action buttons")
    check(not driver.find_elements(By.ID, "offline-token"), "a viewer is offered no token")
    driver.get(PANEL + "/licenses")
    check(LICENSE_KEY in text(driver) and not driver.find_elements(By.CSS_SELECTOR, "input[name=id]"), "a viewer has nothing to tick on the list")
    driver.get(license_page)
    csrf = driver.find_element(By.CSS_SELECTOR, "form.signout input[name=csrf]").get_attribute("value")
    refused = requests.post(license_page + "/suspend", data={"csrf": csrf}, cookies=session_of(driver), timeout=10, allow_redirects=False)
    check(refused.status_code == 403, f"a viewer's change is refused: {refused.status_code}")
    refused = requests.post(PANEL + "/licenses/bulk", data={"csrf": csrf, "action": "deactivate", "id": LICENSE_ID}, cookies=session_of(driver), timeout=10, allow_redirects=False)
    check(refused.status_code == 403, f"a viewer's bulk change is refused: {refused.status_code}")
    driver.get(license_page)
    check(driver.find_element(By.ID, "license-status").text == "active", "the viewer changed nothing")
    step("a viewer sees no buttons and its POSTs are 403")
    # A viewer manages its own two-factor sign-in: on, then off with a code.
    secret, confirmed = set_up_totp(driver)
    driver.find_element(By.ID, "code").send_keys(totp(secret, confirmed + 1))
    driver.find_element(By.XPATH, "//form[contains(@action, '/disable')]/button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "totp-status") and d.find_element(By.ID, "totp-status").text == "off", "two-factor sign-in off")
    step("a viewer turns two-factor sign-in on and off for itself")
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(driver, lambda d: d.current_url.endswith("/sign-in"), "the viewer's sign-out")

    # The operator: signs in with the operator token, creates a tenant and
    # invites its staff, then opens a tenant and acts in it as the operator.
    driver.get(PANEL + "/operator/sign-in")
    accessible(driver, "operator-sign-in")
    driver.find_element(By.ID, "operator-token").send_keys("not the operator token at all")
    driver.find_element(By.CSS_SELECTOR, "form.stack button").click()
    wait_for(driver, lambda d: "Wrong operator token" in text(d), "a wrong operator token refused")
    driver.find_element(By.ID, "operator-token").send_keys(os.environ["KL_OPERATOR_TOKEN"])
    driver.find_element(By.CSS_SELECTOR, "form.stack button").click()
    wait_for(driver, lambda d: d.current_url.endswith("/tenants"), "the tenants page")
    driver.get(license_page)
    wait_for(driver, lambda d: d.current_url.endswith("/tenants"), "a tenant's page to wait for a tenant to be opened")
    driver.find_element(By.ID, "tenant-name").send_keys("Globex")
    driver.find_element(By.XPATH, "//form[.//input[@id='tenant-name']]//button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "new-admin-key"), "the new tenant's admin key")
    admin_key = driver.find_element(By.ID, "new-admin-key").text
    works = requests.get(BASE + "/api/v1/signing-keys", headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)
    check(works.status_code == 200, f"the new tenant's admin key works: {works.status_code}")
    accessible(driver, "new-tenant")
    driver.find_element(By.LINK_TEXT, "Invite the tenant's staff").click()
    accessible(driver, "tenant")
    driver.find_element(By.ID, "email").send_keys("gil@globex.example")
    driver.find_element(By.XPATH, "//form[.//input[@id='email']]//button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "invitation-link"), "the invitation link")
    check("/invitation/" in driver.find_element(By.ID, "invitation-link").text, "a one-time link")
    driver.get(PANEL + "/tenants")
    check("Globex" in driver.find_element(By.ID, "tenant-list").text, "the new tenant is listed")
    shoot(driver, "tenants")
    accessible(driver, "tenants")
    driver.get(PANEL + "/audit")
    driver.find_element(By.XPATH, "//form[contains(@action, '/audit/checkpoints')]/button").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "checkpoints"), "a signed checkpoint listed")
    accessible(driver, "audit")
    download = driver.find_element(By.LINK_TEXT, "Download").get_attribute("href")
    kept = requests.get(download, cookies=session_of(driver), timeout=10)
    check(kept.status_code == 200 and "attachment" in kept.headers.get("content-disposition", ""), f"a checkpoint downloads: {kept.status_code}")
    check(set(kept.json()) == {"body", "signature", "publicKey"}, f"a signed checkpoint: {kept.text[:200]}")
    step("the operator signs an audit checkpoint and downloads it")
    driver.get(PANEL + "/tenants")
    driver.find_element(By.XPATH, f"//form[contains(@action, '/tenants/{os.environ['KL_TENANT_ID']}/open')]/button").click()
    wait_for(driver, lambda d: "Overview" in text(d), "the opened tenant's overview")
    driver.get(license_page)
    driver.find_element(By.XPATH, "//form[contains(@action, '/suspend')]/button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "license-status").text == "suspended", "suspended by the operator")
    check("by the operator" in driver.find_element(By.CSS_SELECTOR, "ol.timeline").text, "the timeline names the operator")
    driver.find_element(By.XPATH, "//form[contains(@action, '/reinstate')]/button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "license-status").text == "active", "reinstated by the operator")
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait_for(driver, lambda d: d.current_url.endswith("/sign-in"), "the operator's sign-out")
    step("the operator signs in with its token, creates a tenant, invites its staff, and acts in a tenant it opens")

    # Last, as it blocks this address: repeated wrong passwords earn a block.
    # The failures are a bucket that refills with time; each attempt costs
    # an argon2 hash, slow in a debug build on a busy machine, so a few more
    # attempts than the bucket holds may be needed.
    blocked = False
    for attempt in range(int(os.environ["KL_BLOCK_AFTER"]) * 3):
        sign_in(driver, admin, f"wrong password {attempt}")
        wait_for(driver, lambda d: "Wrong email or password" in text(d) or "Too many attempts" in text(d), "an answer to a sign-in")
        if "Too many attempts" in text(driver):
            blocked = True
            break
    check(blocked, f"repeated wrong passwords block the address ({attempt + 1} tried)")
    shoot(driver, "blocked")
    step(f"repeated wrong passwords block the address (at attempt {attempt + 1})")


if __name__ == "__main__":
    main()
