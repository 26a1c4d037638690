#!/usr/bin/env python3
"""The scale benchmark's serving baseline, end to end on a real simulator:
`simulate --record-requests` keeps what it answered, and
`scripts/replay_requests.py` sends it all again and gets the same answers.

    tests/bench/test_replay.py path/to/tokentra-sync

Run by scripts/test.sh. Exits non-zero, saying what differed, on failure.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, headers=None, body=None):
    """(status, body bytes), error statuses included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_listening(url, sim):
    deadline = time.time() + 60
    while time.time() < deadline:
        if sim.poll() is not None:
            raise SystemExit(f"the simulator exited with {sim.returncode}")
        try:
            return call("GET", url + "/_sim/stats")
        except OSError:
            # Not bound yet: it binds within milliseconds of starting.
            time.sleep(0.05)
    raise SystemExit("the simulator did not start listening within 60 s")


def main():
    binary = sys.argv[1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sim = subprocess.Popen([binary, "simulate", "--listen", f"127.0.0.1:{port}", "--orgs", "2",
                            "--workers", "1", "--record-requests"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(url, sim)
        now = int(time.time()) // 3600 * 3600
        sent = []
        for org, limit in (("org-1", 24), ("org-2", 5)):
            path = (f"/openai/{org}/v1/organization/usage/completions?start_time={now - 2 * 86400}"
                    f"&end_time={now - 86400}&bucket_width=1h&limit={limit}&group_by[]=model")
            sent.append(call("GET", url + path, {"Authorization": f"Bearer sk-admin-FAKE-sim-{org}"}))
        # A refused POST with a body: recorded with its status and bytes too.
        sent.append(call("POST", url + "/openai/org-1/v1/organization/usage/completions",
                         {"Authorization": "Bearer FAKE-wrong"}, b"\x00\x9f binary"))
        statuses = sorted(status for status, _ in sent)
        if statuses != [200, 200, 401] or any(not body for _, body in sent):
            raise SystemExit(f"unexpected first answers: {statuses}")

        with tempfile.TemporaryDirectory() as work:
            recorded_path = os.path.join(work, "requests.json")
            status, recorded = call("GET", url + "/_sim/requests")
            if status != 200:
                raise SystemExit(f"/_sim/requests answered {status}: {recorded[:200]!r}")
            with open(recorded_path, "wb") as f:
                f.write(recorded)
            replayed = subprocess.run(
                [sys.executable, os.path.join(REPO, "scripts/replay_requests.py"), url, "2", recorded_path],
                capture_output=True, text=True, check=True)
        result = json.loads(replayed.stdout)
        want = {"requests": 3, "statuses": {"200": 2, "401": 1}, "bytes": sum(len(body) for _, body in sent)}
        got = {key: result[key] for key in want}
        if got != want:
            raise SystemExit(f"the replay differed from the first answers: {got} against {want}")
        if not (result["wall_s"] > 0 and result["cpu_s"] >= 0):
            raise SystemExit(f"no timing in {result}")
        _, again = call("GET", url + "/_sim/requests")
        if len(json.loads(again)) != 6:
            raise SystemExit("the replayed requests were not served (and recorded) once each")
        print("replay: 3 recorded requests answered again alike (2 x 200, 1 x 401, same bytes)")
    finally:
        sim.terminate()
        sim.wait(timeout=30)


if __name__ == "__main__":
    main()
