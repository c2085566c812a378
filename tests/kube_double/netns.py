"""Dialing a port on a container's own loopback, from inside its network namespace.

This is what the kubelet's container runtime does for port-forward (containerd enters the
pod sandbox's network namespace and dials ``localhost:PORT`` there), so the double does the
same with the Docker container behind a pod: a thread enters the container's namespace with
``setns(2)``, connects, and goes back. A socket stays in the namespace it was made in, so the
connection is then an ordinary socket of this process: a refused port is refused at once,
and closing the socket closes the app's connection, with no helper process in the container.

It needs what the kubelet needs: to run as root on the machine of the Docker Engine, whose
container processes it can see.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceUnavailable(Exception):
    """The container's network namespace cannot be entered from this process."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def dial(pid: int, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` in the network namespace of process ``pid``.

    Blocks. OSError is the connect's own error (ECONNREFUSED for a port nobody listens on);
    NamespaceUnavailable when the namespace cannot be entered at all.
    """
    outcome: list[socket.socket | BaseException] = []

    def connect_inside() -> None:
        # setns changes the calling thread only: this thread, which ends right after.
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        except OSError as error:
            outcome.append(NamespaceUnavailable(f"cannot open this thread's namespace: {error}"))
            return
        try:
            try:
                theirs = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
                try:
                    _setns(theirs)
                finally:
                    os.close(theirs)
            except OSError as error:
                outcome.append(
                    NamespaceUnavailable(
                        f"cannot enter the network namespace of process {pid} ({error}): the "
                        "double must run as root on the Docker Engine's machine"
                    )
                )
                return
            try:
                outcome.append(socket.create_connection(("127.0.0.1", port), timeout))
            except OSError as error:
                outcome.append(error)
            finally:
                _setns(own)
        finally:
            os.close(own)

    worker = threading.Thread(target=connect_inside, name=f"kube-double-dial-{port}")
    worker.start()
    worker.join()
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    result.settimeout(None)
    return result
