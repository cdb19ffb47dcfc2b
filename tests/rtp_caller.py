#!/usr/bin/env python3
"""A scripted SIP/RTP caller for frontdesk's media tests (standard library only).

It places one call over UDP (INVITE with a PCMU offer, ACK, BYE), streams a raw µ-law file as
20 ms RTP packets (RFC 3550 §5.1, RFC 3551 PCMU, ptime 20) and records every RTP packet it
receives. Impairments are applied at the sender, deterministically from --seed:

  --jitter-ms J   each packet leaves up to J ms after its nominal time (uniform), which reorders
  --loss P        a fraction P of the packets is never sent (not the first nor the last)
  --dup P         a fraction P is sent twice, each copy with its own delay
  --pause-at-ms A --pause-ms D
                  silence suppression: no RTP at all for D ms from A ms into the audio; the
                  timestamps advance over the pause, the sequence numbers do not (RFC 3551 §4.1),
                  and the first packet after it carries the marker bit

The JSON written to --out has: "sent" (one entry per audio frame: index, seq, ts, whether it was
dropped), "received" (arrival time in s since the first packet we sent, seq, ts, marker, payload
type, payload as hex), and "answer" (the SDP of the 200 OK).
"""

import argparse
import json
import random
import re
import socket
import struct
import sys
import threading
import time
import uuid

FRAME = 160


def sip_request(method, uri, call_id, cseq, from_tag, to_hdr, local, body=b"", extra=""):
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sip", required=True, help="frontdesk's SIP address, host:port")
    ap.add_argument("--to", default="100")
    ap.add_argument("--audio", required=True, help="raw µ-law (8 kHz) file to stream")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--pause-at-ms", type=int, default=None)
    ap.add_argument("--pause-ms", type=int, default=0)
    ap.add_argument("--lead-ms", type=int, default=1000, help="wait after the ACK before streaming")
    ap.add_argument("--tail-ms", type=int, default=4000, help="stay on the line after the audio")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    audio = open(args.audio, "rb").read()
    frames = [audio[i:i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]

    host, port = args.sip.rsplit(":", 1)
    server = (host, int(port))
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    local = f"127.0.0.1:{sip.getsockname()[1]}"
    rtp_port = rtp.getsockname()[1]

    call_id = uuid.uuid4().hex + "@rtp-caller"
    from_tag = uuid.uuid4().hex[:10]
    uri = f"sip:{args.to}@{args.sip}"
    sdp = (
        "v=0\r\n"
        f"o=caller 1 1 IN IP4 127.0.0.1\r\n"
        "s=-\r\n"
        "c=IN IP4 127.0.0.1\r\n"
        "t=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    ).encode()
    sip.sendto(sip_request("INVITE", uri, call_id, 1, from_tag, f"<{uri}>", local, sdp), server)
    status, headers, answer = wait_final(sip, "INVITE", 15)
    if status != 200:
        raise SystemExit(f"INVITE answered {status}")
    to_hdr = headers["to"]
    contact = re.search(r"<([^>]+)>", headers.get("contact", f"<{uri}>")).group(1)
    sip.sendto(sip_request("ACK", contact, call_id, 1, from_tag, to_hdr, local), server)
    answer_text = answer.decode(errors="replace")
    c_ip = re.search(r"c=IN IP4 (\S+)", answer_text).group(1)
    m_port = int(re.search(r"m=audio (\d+)", answer_text).group(1))
    remote = (c_ip, m_port)

    received = []
    stop = threading.Event()
    t0 = time.monotonic() + args.lead_ms / 1000.0

    def receive():
        rtp.settimeout(0.1)
        while not stop.is_set():
            try:
                data, _ = rtp.recvfrom(2048)
            except socket.timeout:
                continue
            now = time.monotonic()
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            pt = data[1] & 0x7F
            if 72 <= pt <= 76:
                continue  # RTCP on the RTP port
            seq, ts = struct.unpack("!HI", data[2:8])
            received.append({
                "at": now - t0,
                "seq": seq,
                "ts": ts,
                "marker": bool(data[1] & 0x80),
                "pt": pt,
                "payload": data[12:].hex(),
            })

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()

    # The schedule: nominal send time of frame i, the pause shifting the later ones.
    ssrc = rng.getrandbits(32)
    seq0 = rng.getrandbits(16)
    ts0 = rng.getrandbits(32)
    pause_frame = None if args.pause_at_ms is None else args.pause_at_ms // 20
    pause_frames = args.pause_ms // 20
    sent = []
    schedule = []
    for i, f in enumerate(frames):
        after_pause = pause_frame is not None and i >= pause_frame
        slot = i + (pause_frames if after_pause else 0)
        seq = (seq0 + i) & 0xFFFF
        ts = (ts0 + slot * FRAME) & 0xFFFFFFFF
        marker = i == 0 or (pause_frame is not None and i == pause_frame)
        keep = i == 0 or i == len(frames) - 1
        dropped = not keep and rng.random() < args.loss
        packet = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 0, seq, ts, ssrc) + f
        nominal = slot * 0.020
        copies = 0 if dropped else 1
        if not keep and rng.random() < args.dup:
            copies += 1
        for _ in range(copies):
            schedule.append((nominal + rng.random() * args.jitter_ms / 1000.0, packet))
        sent.append({"index": i, "seq": seq, "ts": ts, "dropped": dropped, "copies": copies})
    schedule.sort(key=lambda s: s[0])

    time.sleep(max(0.0, t0 - time.monotonic()))
    for at, packet in schedule:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rtp.sendto(packet, remote)
    end = t0 + (len(frames) + pause_frames) * 0.020
    time.sleep(max(0.0, end + args.tail_ms / 1000.0 - time.monotonic()))

    sip.sendto(sip_request("BYE", contact, call_id, 2, from_tag, to_hdr, local), server)
    bye_status, _, _ = wait_final(sip, "BYE", 10)
    stop.set()
    receiver.join()
    json.dump({
        "sent": sent,
        "received": received,
        "answer": answer_text,
        "bye_status": bye_status,
        "ssrc": ssrc,
    }, open(args.out, "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
