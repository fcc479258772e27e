"""Caddy's write idle timeout (servers { timeouts { write_idle } }) still
protects the server when the python handler sends a large response in its
wider pieces (writechunk.go): a client that stops reading is cut off, and the
interpreter thread that was writing to it is free again."""

import socket
import time

import httpx

from conftest import RAW_APP_DIR, python_block

IDLE_GLOBAL = "\tservers {\n\t\ttimeouts {\n\t\t\twrite_idle 1s\n\t\t}\n\t}"


def test_stalled_client_is_cut_by_write_idle(start_caddy):
    sites = "http://:@PORT@ {\n" + python_block("rawapp:app", RAW_APP_DIR, venv=False, threads=2) + "\n}\n"
    srv = start_caddy("write-idle", sites=sites, global_extra=IDLE_GLOBAL)
    try:
        size = 64 << 20  # one chunk, far more than the socket buffers hold
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /big-one?size=%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200"), got[:100]
        time.sleep(4)  # read nothing: the write deadline (1 s) passes
        total = len(got)
        try:
            while total < size:  # the headers make a full response longer than size
                b = s.recv(1 << 20)
                if not b:
                    break
                total += len(b)
        except ConnectionResetError:
            pass
        s.close()
        assert total < size, "the stalled client got the whole response: no write deadline applied"
        # Both threads serve again (the one that was writing gave up).
        for _ in range(4):
            r = httpx.get(srv.url("/big-one?size=300000"), timeout=10)
            assert r.status_code == 200 and r.content == b"b" * 300000
    finally:
        srv.stop()
