#!/usr/bin/env python3
"""The SIP half of the test callers tests/rtp_caller.py and tests/echo_caller.py (standard library
only): one call over UDP from 127.0.0.1 with a PCMU offer (INVITE, 200, ACK, BYE; RFC 3261, RFC
3264, ptime 20). Not a program of its own.
"""

import re
import socket
import threading
import time
import uuid


def sip_request(method, uri, call_id, cseq, from_tag, to_hdr, local, body=b"", extra=""):
    """One request as bytes; `local` is our host:port (Via, Contact)."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:+15550001111@{local.split(':')[0]}>;tag={from_tag}",
        f"To: {to_hdr}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:caller@{local}>",
        "User-Agent: frontdesk-test-rtp-caller",
    ]
    if extra:
        lines.append(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_response(data):
    """(status, headers with lower-case names (the first of each), body)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    m = re.match(r"SIP/2.0 (\d+)", lines[0])
    status = int(m.group(1)) if m else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    return status, headers, body


def wait_final(sock, method, timeout):
    """The final response to our `method` within `timeout` s; SystemExit without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            break
        status, headers, body = parse_response(data)
        if status >= 200 and method in headers.get("cseq", ""):
            return status, headers, body
    raise SystemExit(f"no final response to {method}")


class Call:
    """One answered call to `sip_addr` (host:port) for user `to`, our RTP socket bound to
    127.0.0.1:`rtp_port` (0: any). Attributes: `rtp` (the RTP socket), `remote` (frontdesk's
    RTP address from the answer), `answer` (the 200's SDP, text). SystemExit when the INVITE is
    not answered 200 within 15 s.
    """

    def __init__(self, sip_addr, to, rtp_port=0, name="rtp-caller"):
        host, port = sip_addr.rsplit(":", 1)
        self.server = (host, int(port))
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", rtp_port))
        self.local = f"127.0.0.1:{self.sip.getsockname()[1]}"
        self.call_id = uuid.uuid4().hex + "@" + name
        self.from_tag = uuid.uuid4().hex[:10]
        uri = f"sip:{to}@{sip_addr}"
        sdp = (
            "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp.getsockname()[1]} RTP/AVP 0\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        ).encode()
        self._send("INVITE", uri, 1, f"<{uri}>", sdp)
        status, headers, answer = wait_final(self.sip, "INVITE", 15)
        if status != 200:
            raise SystemExit(f"INVITE answered {status}")
        self.to_hdr = headers["to"]
        self.contact = re.search(r"<([^>]+)>", headers.get("contact", f"<{uri}>")).group(1)
        self._send("ACK", self.contact, 1, self.to_hdr)
        self.answer = answer.decode(errors="replace")
        self.remote = (
            re.search(r"c=IN IP4 (\S+)", self.answer).group(1),
            int(re.search(r"m=audio (\d+)", self.answer).group(1)),
        )

    def _send(self, method, uri, cseq, to_hdr, body=b""):
        request = sip_request(method, uri, self.call_id, cseq, self.from_tag, to_hdr, self.local, body)
        self.sip.sendto(request, self.server)

    def bye(self, timeout):
        """Sends BYE; returns the status of its final response (SystemExit without one within
        `timeout` s)."""
        self._send("BYE", self.contact, 2, self.to_hdr)
        return wait_final(self.sip, "BYE", timeout)[0]


def receive_rtp(sock, on_packet):
    """Starts a thread that calls on_packet(data, arrival) for every RTP packet (version 2, at
    least the 12-byte header) arriving on `sock`, `arrival` being time.monotonic(). Returns a
    function that stops the thread and waits for it.
    """
    stop = threading.Event()

    def run():
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                data, _ = sock.recvfrom(2048)
            except socket.timeout:
                continue
            arrival = time.monotonic()
            if len(data) >= 12 and data[0] >> 6 == 2:
                on_packet(data, arrival)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def finish():
        stop.set()
        thread.join()

    return finish
