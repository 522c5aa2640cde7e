"""A deliberately bad websocket client on a raw socket: it can stop reading entirely, which no well-behaved
client library lets a test do, so the server's slow-consumer handling can be exercised for real."""

from __future__ import annotations

import base64
import os
import re
import socket
import struct


class RawWebSocket:
    def __init__(self, port: int, path: str, *, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_until(self, pattern: bytes) -> re.Match[bytes]:
        while True:
            found = re.search(pattern, self.buffer)
            if found:
                return found
            self.buffer += self.sock.recv(65536)

    def read_all_frames(self) -> list[tuple[int, bytes]]:
        """Read to the end of the connection; every (opcode, payload) the server sent."""
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            self.buffer += chunk
        frames, data = [], self.buffer
        while len(data) >= 2:
            opcode, n = data[0] & 0x0F, data[1] & 0x7F
            offset = 2
            if n == 126:
                n, offset = struct.unpack("!H", data[2:4])[0], 4
            elif n == 127:
                n, offset = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < offset + n:
                break
            frames.append((opcode, data[offset:offset + n]))
            data = data[offset + n:]
        return frames

    def close(self) -> None:
        self.sock.close()
