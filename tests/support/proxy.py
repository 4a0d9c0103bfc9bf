"""A TCP proxy that tests can cut or freeze, in front of a real server.

`cut()` drops every open connection and refuses new ones, as a restart or a crash would.
`freeze()` keeps every socket open but forwards nothing in either direction, and accepts new
connections without forwarding them either: a server that hangs, or a network that silently
drops packets. Used to simulate outages for one process without stopping the shared server
that other tests use.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"amqp": 5672, "postgresql": 5432}


class TcpProxy:
    @classmethod
    def in_front_of(cls, url: str) -> tuple[TcpProxy, str]:
        """A proxy to `url`'s server, and `url` rewritten to go through it."""
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or _DEFAULT_PORTS[scheme])
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
        return proxy, urlunsplit(parts._replace(netloc=netloc))

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._accepting = True
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def cut(self) -> None:
        """Close every proxied connection and refuse new ones until `restore()`."""
        with self._lock:
            self._accepting = False
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def freeze(self) -> None:
        """Keep every connection open (and accept new ones) but forward no byte until `thaw()`."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Forward again what waited during a `freeze()`, and everything after it."""
        self._flowing.set()

    def restore(self) -> None:
        with self._lock:
            self._accepting = True

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        self.cut()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                accepting = self._accepting
            if not accepting:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                # A frozen proxy holds what it read (the sender's kernel saw it delivered).
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Either side closing ends both directions: the other pump then finds them closed.
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with self._lock:
                    self._sockets.discard(sock)
                sock.close()
