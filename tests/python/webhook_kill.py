"""Webhook deliveries through kill -9: the real keyledger binary is killed
again and again while licenses are activated and their webhooks sent, and
started again on the same store. Every activation that was answered 200
must reach the receiver at least once, and the duplicates must be bounded
by what a dispatcher can have in flight when it dies.

Usage: webhook_kill.py KEYLEDGER_BINARY

The store comes from the environment, as the binary reads it
(KEYLEDGER_DATA_DIR for SQLite, or KEYLEDGER_DATABASE_URL with the
secrets every process on that database shares); KEYLEDGER_OPERATOR_TOKEN
must be set. Bounded: it gives up after a few minutes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

KILLS = 3
LICENSES = 240
# Envelopes a dispatcher takes at a time, and how often a tail feed writes
# its position (250 ms): a death replays at most what was read since.
DUPLICATES_PER_KILL = 400
DEADLINE = time.monotonic() + 240

arrivals = {}
lock = threading.Lock()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        # A little time per answer, so a kill finds attempts under way.
        time.sleep(0.01)
        try:
            license_id = json.loads(body)["data"]["licenseId"]
        except (ValueError, KeyError, TypeError):
            license_id = None
        if license_id:
            with lock:
                arrivals[license_id] = arrivals.get(license_id, 0) + 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail(message):
    print(f"==> FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    binary = sys.argv[1]
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        KEYLEDGER_LISTEN=f"127.0.0.1:{port}",
        KEYLEDGER_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        KEYLEDGER_WEBHOOK_RETRY_SCHEDULE="0.2,0.3,0.5,0.5,0.5,0.5,0.5,0.5",
        KEYLEDGER_LOG=os.environ.get("KEYLEDGER_LOG", "warn"),
    )
    token = env["KEYLEDGER_OPERATOR_TOKEN"]
    server = {"process": None}

    def start():
        server["process"] = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL)
        while time.monotonic() < DEADLINE:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if server["process"].poll() is not None:
                fail(f"keyledger exited with {server['process'].returncode} at start")
            time.sleep(0.1)
        fail("keyledger did not start")

    def kill():
        server["process"].send_signal(signal.SIGKILL)
        server["process"].wait()

    start()
    try:
        admin = requests.post(
            f"{base}/api/v1/tenants", headers={"Authorization": f"Bearer {token}"}, json={"name": "Kill"}
        ).json()["adminKey"]
        user = requests.post(f"{base}/api/v1/api-keys", headers={"X-API-Key": admin}, json={"role": "user"}).json()[
            "key"
        ]
        hook = requests.post(
            f"{base}/api/v1/webhooks",
            headers={"X-API-Key": admin},
            json={"url": hook_url, "events": ["license.activated"]},
        )
        if hook.status_code != 201:
            fail(f"creating the webhook answered {hook.status_code}: {hook.text}")
        webhook = hook.json()["id"]
        licenses = []
        for _ in range(LICENSES):
            made = requests.post(f"{base}/api/v1/fastrLicense/generate", headers={"X-API-Key": user}, json={})
            licenses.append((made.json()["id"], made.json()["licenseKey"]))

        acknowledged = []
        done = threading.Event()

        def activate_all():
            for license_id, key in licenses:
                while time.monotonic() < DEADLINE:
                    try:
                        answer = requests.post(
                            f"{base}/api/v1/fastrLicense/activate",
                            json={"licenseKey": key, "machineId": "m1", "machineName": "kill"},
                            timeout=5,
                        )
                        if answer.status_code == 200:
                            acknowledged.append(license_id)
                            break
                    except requests.RequestException:
                        pass
                    time.sleep(0.05)  # the server is down; the same activation again
            done.set()

        worker = threading.Thread(target=activate_all)
        worker.start()
        for round_ in range(KILLS):
            target = (round_ + 1) * LICENSES // (KILLS + 1)
            while len(acknowledged) < target and not done.is_set():
                time.sleep(0.01)
            kill()
            print(f"==> killed keyledger (-9) after {len(acknowledged)} activations, {len(arrivals)} delivered")
            time.sleep(0.2)
            start()
        worker.join()
        if len(acknowledged) != LICENSES:
            fail(f"only {len(acknowledged)} of {LICENSES} activations were answered")

        while time.monotonic() < DEADLINE:
            with lock:
                missing = [license_id for license_id in acknowledged if license_id not in arrivals]
            if not missing:
                break
            time.sleep(0.2)
        if missing:
            fail(f"{len(missing)} acknowledged activations never reached the receiver, e.g. {missing[:3]}")
        with lock:
            duplicates = sum(count - 1 for count in arrivals.values())
        print(f"==> {LICENSES} activations delivered through {KILLS} kills; {duplicates} duplicates")
        if duplicates > KILLS * DUPLICATES_PER_KILL:
            fail(f"{duplicates} duplicates, more than {DUPLICATES_PER_KILL} a kill")

        # The delivery log lists what was sent and leaves nothing pending.
        while time.monotonic() < DEADLINE:
            pending = requests.get(
                f"{base}/api/v1/webhooks/{webhook}/deliveries?status=pending", headers={"X-API-Key": admin}
            ).json()["deliveries"]
            if not pending:
                break
            time.sleep(0.2)
        if pending:
            fail(f"{len(pending)} deliveries still pending in the log")
        listed, after = 0, ""
        while True:
            page = requests.get(
                f"{base}/api/v1/webhooks/{webhook}/deliveries?limit=200{after}", headers={"X-API-Key": admin}
            ).json()
            listed += len(page["deliveries"])
            if not page["nextAfter"]:
                break
            after = f"&after={page['nextAfter']}"
        if listed < LICENSES:
            fail(f"the delivery log lists {listed} deliveries for {LICENSES} activations")
        print(f"==> the delivery log lists {listed} deliveries, none pending: PASS")
    finally:
        if server["process"] and server["process"].poll() is None:
            server["process"].terminate()
            try:
                server["process"].wait(timeout=20)
            except subprocess.TimeoutExpired:
                server["process"].kill()
        receiver.shutdown()


if __name__ == "__main__":
    main()
