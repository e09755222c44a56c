"""A TCP proxy in front of a real server that a test can break on purpose: pass traffic
through, refuse it (every connection cut at once, as when the endpoint is down), or answer each
request with an HTTP 500. Used to put real faults between jaxport and its S3 endpoint."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

PASS, DOWN, ERROR_500 = "pass", "down", "500"
_BODY = b'<?xml version="1.0"?><Error><Code>InternalError</Code><Message>injected</Message></Error>'
_S3_500 = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BODY), _BODY))


@dataclass
class FaultProxy:
    """Listens on 127.0.0.1:`port` and forwards to `target` (host, port) in mode PASS.

    Switching mode cuts every open connection, so pooled keep-alive connections see the fault
    too. `faults` counts connections refused or answered 500."""

    target: tuple[str, int]
    mode: str = PASS
    faults: int = 0
    _open: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def set(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.set(DOWN)
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            mode = self.mode
            if mode != PASS:
                self.faults += 1
        upstream = None
        try:
            if mode == DOWN:
                return
            if mode == ERROR_500:
                client.recv(65536)  # the request head; the answer does not depend on it
                client.sendall(_S3_500)
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open.update((client, upstream))
            pump = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            pump.start()
            _pipe(client, upstream)
            pump.join()
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.difference_update((client, upstream))
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
