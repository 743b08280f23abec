"""python-socketio (the official Python client) against the hubbub binary: connect,
an event with an ack, rooms, a message from one client to another, over WebSocket and
long-polling. Run: HUBBUB_BIN=... python3 test_socketio.py (exit status 0 on success)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import socketio


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start():
    port = free_port()
    binary = os.environ["HUBBUB_BIN"]
    proc = subprocess.Popen(
        [binary, "--bind", f"127.0.0.1:{port}"],
        cwd=tempfile.mkdtemp(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("hubbub did not start")


def scenario(url, transports):
    a = socketio.Client(reconnection=False)
    b = socketio.Client(reconnection=False)
    got = threading.Event()
    received = {}

    @b.on("chat")
    def on_chat(data, meta):
        received["data"], received["meta"] = data, meta
        got.set()

    a.connect(url, transports=transports, auth={"user": "py-a"}, wait_timeout=10)
    b.connect(url, transports=transports, auth={"user": "py-b"}, wait_timeout=10)
    assert a.connected and b.connected

    ack = a.call("join", {"room": "py"}, timeout=5)
    assert ack["ok"] is True and ack["room"] == "py", ack
    ack = b.call("join", {"room": "py"}, timeout=5)
    assert ack["members"] == 2, ack

    ack = a.call("publish", {"room": "py", "event": "chat", "data": {"text": "hello"}}, timeout=5)
    assert ack["ok"] is True and isinstance(ack["seq"], int), ack
    assert got.wait(5), "b received nothing"
    assert received["data"] == {"text": "hello"}, received
    assert received["meta"]["from"] == "py-a" and received["meta"]["room"] == "py", received

    bad = a.call("send", {"to": "nobody", "event": "e"}, timeout=5)
    assert bad == {"ok": False, "code": "user_offline", "message": "user `nobody` is not online"}, bad

    a.disconnect()
    b.disconnect()


def main():
    proc, url = start()
    passed = failed = 0
    try:
        for transports in (["websocket"], ["polling"]):
            try:
                scenario(url, transports)
                passed += 1
                print(f"ok - python-socketio over {transports[0]}")
            except Exception as e:  # report and keep going
                failed += 1
                print(f"not ok - python-socketio over {transports[0]}: {e!r}")
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
