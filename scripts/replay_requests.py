#!/usr/bin/env python3
"""Sends recorded provider requests to the simulator again and throws the
answers away: the scale benchmark's "simulator alone serving the same pages".

    scripts/replay_requests.py http://127.0.0.1:PORT PARALLEL REQUESTS.json

REQUESTS.json is what `GET /_sim/requests` answered (a simulator started with
`--record-requests`). PARALLEL keep-alive connections, one thread each, take
the requests in their recorded order. The client is kept as lean as Python
allows (raw HTTP/1.1 over sockets, answers read into one reused buffer), so
that what it measures is the simulator: curl --parallel spent 1.1 CPU s on
the 12,129 requests of a 1,000-account first sync, this 0.5-0.7 s.

Prints one JSON object: wall seconds and this process's CPU seconds for the
sending alone (not the start or reading the file), requests, bytes of
answers, and how many answers had each status.
"""

import base64
import collections
import json
import resource
import socket
import sys
import threading
import time
import urllib.parse

# Framing and hop-by-hop headers: this client writes its own.
SKIPPED = {"host", "content-length", "connection", "transfer-encoding", "expect", "keep-alive"}


def raw_requests(recorded, host):
    out = []
    for r in recorded:
        body = base64.b64decode(r["body_base64"])
        head = [f"{r['method']} {r['path']} HTTP/1.1", f"Host: {host}"]
        head += [f"{name}: {value}" for name, value in r["headers"] if name.lower() not in SKIPPED]
        if body or r["method"] in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return out


class Connection:
    def __init__(self, addr):
        self.addr = addr
        self.sock = None
        self.buf = bytearray(1 << 20)
        self.view = memoryview(self.buf)

    def open(self):
        if self.sock:
            self.sock.close()
        self.sock = socket.create_connection(self.addr)

    def exchange(self, request):
        """(status, body bytes) of one answer; reconnects once if the server
        closed the idle connection before answering."""
        for attempt in (0, 1):
            if self.sock is None:
                self.open()
            try:
                self.sock.sendall(request)
                return self.read_answer()
            except (ConnectionError, EOFError):
                if attempt:
                    raise
                self.sock.close()
                self.sock = None

    def read_answer(self):
        data = b""
        while b"\r\n\r\n" not in data:
            n = self.sock.recv_into(self.buf)
            if n == 0:
                raise EOFError("the server closed the connection")
            data += bytes(self.view[:n])
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise SystemExit("a chunked answer: this client reads Content-Length only")
        if length is None:
            raise SystemExit(f"an answer without Content-Length: {lines[0]!r}")
        if len(rest) > length:
            raise SystemExit("more bytes than the answer's length: requests are not pipelined")
        got = len(rest)
        while got < length:
            n = self.sock.recv_into(self.buf, min(len(self.buf), length - got))
            if n == 0:
                raise EOFError("the server closed the connection mid-answer")
            got += n
        return status, length


def main():
    url, parallel, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    parsed = urllib.parse.urlsplit(url)
    addr = (parsed.hostname, parsed.port)
    with open(path) as f:
        recorded = json.load(f)
    queue = raw_requests(recorded, parsed.netloc)
    queue.reverse()
    lock = threading.Lock()
    answers = []
    failures = []

    def work():
        conn = Connection(addr)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    request = queue.pop()
                answers.append(conn.exchange(request))
        except BaseException as e:  # reported below, not lost in a thread
            failures.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(parallel)]
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu1 = time.time() - t0, resource.getrusage(resource.RUSAGE_SELF)
    if failures:
        raise SystemExit(f"{len(failures)} connection(s) failed: {failures[:3]}")
    json.dump({
        "requests": len(answers),
        "wall_s": wall,
        "cpu_s": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
        "bytes": sum(length for _, length in answers),
        "statuses": dict(collections.Counter(status for status, _ in answers)),
    }, sys.stdout)


if __name__ == "__main__":
    main()
