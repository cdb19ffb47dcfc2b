#!/usr/bin/env python3
"""A scripted SIP/RTP caller for frontdesk's media tests (standard library only).

It places one call over UDP (tests/sip_caller.py: INVITE with a PCMU offer, ACK, BYE), streams a raw µ-law file as
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
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sip_caller import Call, receive_rtp  # noqa: E402

FRAME = 160


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

    call = Call(args.sip, args.to, name="rtp-caller")
    rtp = call.rtp
    remote = call.remote

    received = []
    t0 = time.monotonic() + args.lead_ms / 1000.0

    def on_packet(data, now):
        pt = data[1] & 0x7F
        if 72 <= pt <= 76:
            return  # RTCP on the RTP port
        seq, ts = struct.unpack("!HI", data[2:8])
        received.append({
            "at": now - t0,
            "seq": seq,
            "ts": ts,
            "marker": bool(data[1] & 0x80),
            "pt": pt,
            "payload": data[12:].hex(),
        })

    stop_receiving = receive_rtp(rtp, on_packet)

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

    bye_status = call.bye(10)
    stop_receiving()
    json.dump({
        "sent": sent,
        "received": received,
        "answer": call.answer,
        "bye_status": bye_status,
        "ssrc": ssrc,
    }, open(args.out, "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
