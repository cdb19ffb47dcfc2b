#!/usr/bin/env python3
"""A caller on a line with echo, for frontdesk's echo tests (standard library only).

It places one call over UDP like tests/rtp_caller.py (tests/sip_caller.py) and sends one
20 ms PCMU packet every 20 ms for the whole call. Each packet carries the line's echo: the audio
frontdesk sent us, as the phone played it (by RTP timestamp, from the first packet's arrival),
--delay-ms later and --erl-db quieter (linear gain, re-encoded as µ-law), plus the caller's own
speech where it speaks:

  * after each of the agent's replies (audio followed by --reply-gap-ms of silence), it waits
    --answer-after-ms and says --utterance (raw µ-law, spoken at its own level), --turns times;
  * with --barge-in-reply K (1 = the greeting) it says --barge-audio --barge-after-ms into the
    K-th reply instead, over the agent, and does not speak afterwards.

The JSON written to --out has: "sent" (every payload we sent, hex, in order), "received"
(arrival time in s since the call's first packet, seq, ts, marker, pt, silent), "replies"
(start and end of each reply heard, s), "spoke" (start and end of each of our utterances, s),
and "epoch" (wall-clock time of time 0, for packet captures).
"""

import argparse
import json
import math
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sip_caller import Call, receive_rtp  # noqa: E402

FRAME = 160


def ulaw_decode(b):
    u = ~b & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if sign else sample


def ulaw_encode(s):
    bias, clip = 0x84, 32635
    sign = 0x80 if s < 0 else 0
    s = min(abs(int(s)), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not s & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (s >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


DECODE = [ulaw_decode(b) for b in range(256)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sip", required=True, help="frontdesk's SIP address, host:port")
    ap.add_argument("--to", default="100")
    ap.add_argument("--rtp-port", type=int, default=0, help="our RTP port (0: any)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--erl-db", type=float, default=12.0, help="echo return loss")
    ap.add_argument("--delay-ms", type=int, default=200, help="echo delay after playout")
    ap.add_argument("--utterance", help="raw µ-law the caller says after each reply")
    ap.add_argument("--turns", type=int, default=0)
    ap.add_argument("--reply-gap-ms", type=int, default=700, help="silence that ends a reply")
    ap.add_argument("--answer-after-ms", type=int, default=300)
    ap.add_argument("--barge-in-reply", type=int, default=0)
    ap.add_argument("--barge-audio")
    ap.add_argument("--barge-after-ms", type=int, default=600)
    ap.add_argument("--tail-ms", type=int, default=2500, help="stay on the line after the last turn")
    ap.add_argument("--max-s", type=float, default=150.0)
    args = ap.parse_args()

    gain = 10 ** (-args.erl_db / 20.0)
    utterance = [DECODE[b] for b in open(args.utterance, "rb").read()] if args.utterance else []
    barge = [DECODE[b] for b in open(args.barge_audio, "rb").read()] if args.barge_audio else []

    call = Call(args.sip, args.to, rtp_port=args.rtp_port, name="echo-caller")
    rtp = call.rtp
    remote = call.remote

    t0 = time.monotonic()
    epoch = time.time()
    lock = threading.Lock()
    played = {}  # frame index on the phone's playout timeline -> linear samples
    playout = {}  # ts0, start
    received = []

    def on_packet(data, arrival):
        now = arrival - t0
        cc = data[0] & 0x0F
        marker = bool(data[1] & 0x80)
        pt = data[1] & 0x7F
        seq, ts = struct.unpack("!HI", data[2:8])
        payload = data[12 + 4 * cc:]
        silent = all(b in (0xFF, 0x7F) for b in payload)
        with lock:
            received.append({"at": now, "seq": seq, "ts": ts, "marker": marker, "pt": pt, "silent": silent})
            if pt != 0 or len(payload) != FRAME:
                return
            if not playout:
                # The phone starts playing 20 ms after the first packet.
                playout["ts0"] = ts
                playout["start"] = now + 0.020
            index = ((ts - playout["ts0"]) & 0xFFFFFFFF) // FRAME
            played[index] = [DECODE[b] for b in payload]

    stop_receiving = receive_rtp(rtp, on_packet)

    sent = []
    replies = []  # [start, end]
    spoke = []
    speaking = None  # (samples, position)
    turns_left = args.turns
    in_reply = False
    last_audio = None
    answer_at = None
    finished_at = None
    barged = False
    n = 0
    seq = 1000
    ts = 0
    ssrc = 0x1234ABCD
    while True:
        target = t0 + n * 0.020
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = n * 0.020
        with lock:
            # Reply tracking from what arrived so far.
            audio_recent = [r for r in received[-3:] if r["pt"] == 0 and not r["silent"]]
            if audio_recent:
                last_audio = audio_recent[-1]["at"]
                if not in_reply:
                    in_reply = True
                    replies.append([last_audio, None])
                    answer_at = None
            elif in_reply and last_audio is not None and now - last_audio > args.reply_gap_ms / 1000.0:
                in_reply = False
                replies[-1][1] = last_audio
                if turns_left > 0 and utterance and not barged:
                    answer_at = now + args.answer_after_ms / 1000.0
            echo = [0] * FRAME
            if playout:
                pos = (now - args.delay_ms / 1000.0 - playout["start"]) / 0.020
                frame = played.get(int(math.floor(pos + 0.5))) if pos >= -0.5 else None
                if frame:
                    echo = [int(s * gain) for s in frame]
        # Our own speech.
        if speaking is None and answer_at is not None and now >= answer_at:
            speaking = (utterance, 0)
            spoke.append([now, None])
            turns_left -= 1
            answer_at = None
        if (
            speaking is None
            and not barged
            and args.barge_in_reply
            and in_reply
            and len(replies) == args.barge_in_reply
            and now - replies[-1][0] >= args.barge_after_ms / 1000.0
        ):
            speaking = (barge, 0)
            spoke.append([now, None])
            barged = True
        mix = echo
        if speaking is not None:
            samples, p = speaking
            chunk = samples[p:p + FRAME]
            mix = [e + (chunk[i] if i < len(chunk) else 0) for i, e in enumerate(echo)]
            p += FRAME
            if p >= len(samples):
                speaking = None
                spoke[-1][1] = now + 0.020
                if barged or turns_left == 0:
                    finished_at = now
            else:
                speaking = (samples, p)
        payload = bytes(ulaw_encode(max(-32000, min(32000, s))) for s in mix)
        header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
        rtp.sendto(header + payload, remote)
        sent.append(payload.hex())
        seq += 1
        ts += FRAME
        n += 1
        if finished_at is not None and now - finished_at > args.tail_ms / 1000.0 and not in_reply:
            break
        if now > args.max_s:
            break

    stop_receiving()
    try:
        call.bye(5)
    except SystemExit:
        pass
    with open(args.out, "w") as f:
        json.dump({"sent": sent, "received": received, "replies": replies, "spoke": spoke,
                   "epoch": epoch}, f)


if __name__ == "__main__":
    main()
