#!/usr/bin/env python3
"""Open many idle Postgres connections and keep them open (for benches/pgbench.sh).

Speaks just enough of the wire protocol, with the standard library only, to get a session to
ReadyForQuery: the startup message, then trust or SCRAM-SHA-256 authentication. Prints
`ready N` on stdout once all N connections are idle, then holds them until stdin closes
(or the process is killed), and finally sends Terminate on each.

Usage: idle_clients.py HOST PORT USER DATABASE COUNT   (password in $PGPASSWORD, if any)
"""

import base64
import hashlib
import hmac
import os
import socket
import struct
import sys

PROTOCOL_3_0 = 196608
AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 10, 11, 12

# The SCRAM salted password is the same for every connection with the same salt and iteration
# count; PBKDF2 is deliberately slow, so derive it once.
_salted_cache = {}


def send(sock, kind, payload):
    sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data.extend(chunk)
    return bytes(data)


def recv_message(sock):
    header = recv_exact(sock, 5)
    length = struct.unpack("!i", header[1:5])[0]
    return header[0:1], recv_exact(sock, length - 4)


def error_text(payload):
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[part[0:1]] = part[1:].decode("utf-8", "replace")
    return "%s: %s" % (fields.get(b"C", "?"), fields.get(b"M", "?"))


def scram_exchange(sock, mechanisms, password):
    if b"SCRAM-SHA-256" not in mechanisms.split(b"\0"):
        raise RuntimeError("server offers no SCRAM-SHA-256: %r" % mechanisms)
    nonce = base64.b64encode(os.urandom(18)).decode()
    client_first_bare = "n=,r=" + nonce
    first = ("n,," + client_first_bare).encode()
    send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)

    kind, payload = recv_message(sock)
    if kind == b"E":
        raise RuntimeError(error_text(payload))
    if kind != b"R" or struct.unpack("!i", payload[:4])[0] != AUTH_SASL_CONTINUE:
        raise RuntimeError("expected SASLContinue, got %r" % kind)
    server_first = payload[4:].decode()
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    if not attrs["r"].startswith(nonce):
        raise RuntimeError("server nonce does not extend ours")
    salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
    key = (salt, iterations)
    if key not in _salted_cache:
        _salted_cache[key] = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    salted = _salted_cache[key]
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_without_proof = "c=biws,r=" + attrs["r"]
    auth_message = ",".join([client_first_bare, server_first, final_without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    final = final_without_proof + ",p=" + base64.b64encode(proof).decode()
    send(sock, b"p", final.encode())

    kind, payload = recv_message(sock)
    if kind == b"E":
        raise RuntimeError(error_text(payload))
    if kind != b"R" or struct.unpack("!i", payload[:4])[0] != AUTH_SASL_FINAL:
        raise RuntimeError("expected SASLFinal, got %r" % kind)
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expected = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    if payload[4:].decode() != "v=" + base64.b64encode(expected).decode():
        raise RuntimeError("server signature does not verify")


def connect(host, port, user, database, password):
    sock = socket.create_connection((host, port), timeout=30)
    params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    body = struct.pack("!i", PROTOCOL_3_0) + params
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    while True:
        kind, payload = recv_message(sock)
        if kind == b"E":
            raise RuntimeError(error_text(payload))
        if kind == b"R":
            code = struct.unpack("!i", payload[:4])[0]
            if code == AUTH_SASL:
                scram_exchange(sock, payload[4:], password)
            elif code != AUTH_OK:
                raise RuntimeError("unsupported authentication request %d" % code)
        elif kind == b"Z":
            sock.settimeout(None)
            return sock
        # ParameterStatus, BackendKeyData, NoticeResponse: nothing to do.


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    host, port, user, database, count = sys.argv[1:]
    password = os.environ.get("PGPASSWORD", "")
    socks = []
    try:
        for i in range(int(count)):
            socks.append(connect(host, int(port), user, database, password))
    except Exception as e:  # report how far we got, then give up
        print("failed after %d connections: %s" % (len(socks), e), flush=True)
        sys.exit(1)
    print("ready %d" % len(socks), flush=True)
    sys.stdin.read()
    for sock in socks:
        try:
            send(sock, b"X", b"")
            sock.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
