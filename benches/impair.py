#!/usr/bin/env python3
"""Network impairment for benches/load.sh (plain python3, standard library only; root).

Takes the packets an iptables rule hands to netfilter queue QUEUE (the NFQUEUE target; the rule
in load.sh matches only the caller's RTP towards frontdesk) and, per packet, independently:

  * drops it with probability --loss (verdict NF_DROP, never seen by frontdesk);
  * otherwise delays it by a uniform 0..--jitter-ms (the verdict NF_ACCEPT is given that late;
    verdicts are given in due order, not arrival order, so packets overtake each other: a
    reordering caller);
  * and with probability --dup sends a copy too, with its own uniform delay, through a raw IP
    socket whose packets carry firewall mark 1 (which the rule does not match, so the copy is not
    queued again). The copy's UDP checksum is zeroed (allowed for UDP over IPv4, RFC 768).

This is the model of tests/rtp_caller.py (--jitter-ms 60 --loss 0.05 --dup 0.02), applied to
SIPp's packets on the way, because this kernel has neither the netem nor the prio qdisc. Run it
only inside a network namespace of its own (load.sh does: `unshare -n`).

At SIGTERM/SIGINT it accepts every packet it still holds and writes its counters as JSON to
--stats: packets seen, dropped, delayed, duplicated, packets that did not match --sport/--dports
(0 when the rule is right), and how late it gave verdicts against their due time (p50/p99/max ms:
the impairer's own scheduling error, which adds to the intended delay).

The netfilter queue protocol (nfnetlink_queue, NETLINK_NETFILTER subsystem 3) is spoken directly:
NFQNL_MSG_CONFIG (bind, copy mode packet, queue length), NFQNL_MSG_PACKET in, NFQNL_MSG_VERDICT
out; see linux/netfilter/nfnetlink_queue.h.
"""

import argparse
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
SO_MARK = 36
SO_RCVBUFFORCE = 33
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_PAYLOAD = 10
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NF_DROP = 0
NF_ACCEPT = 1
DUP_MARK = 1


def attr(kind, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)


def message(kind, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def messages(buf):
    """Yields (type, payload after the netlink header) of each message in one datagram."""
    off = 0
    while off + 16 <= len(buf):
        n, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", buf, off)
        if n < 16:
            return
        yield kind, buf[off + 16 : off + n]
        off += (n + 3) & ~3


def attrs(payload):
    """Attributes of an nfnetlink message (after its 4-byte nfgenmsg) as {type: data}."""
    out = {}
    off = 4
    while off + 4 <= len(payload):
        n, kind = struct.unpack_from("=HH", payload, off)
        if n < 4:
            break
        out[kind & 0x3FFF] = payload[off + 4 : off + n]
        off += (n + 3) & ~3
    return out


def request(sock, queue, attrs_, seq):
    """One config request, and its acknowledgement (exits on an error)."""
    sock.send(message(NFQNL_MSG_CONFIG, queue, attrs_, NLM_F_REQUEST | NLM_F_ACK, seq))
    for kind, payload in messages(sock.recv(65536)):
        if kind == NLMSG_ERROR:
            err = struct.unpack_from("=i", payload)[0]
            if err != 0:
                sys.exit(f"impair: nfqueue config failed: {os.strerror(-err)} (is the queue taken?)")
            return


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v), max(1, int(q * len(v) + 0.999999))) - 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queue", type=int, default=0, help="netfilter queue number (iptables --queue-num)")
    ap.add_argument("--loss", type=float, default=0.05, help="fraction of packets dropped")
    ap.add_argument("--dup", type=float, default=0.02, help="fraction of packets sent twice")
    ap.add_argument("--jitter-ms", type=float, default=60.0, help="each packet delayed uniform 0..J ms")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sport", type=int, help="the caller's RTP source port (others are counted, not impaired)")
    ap.add_argument("--dports", help="LOW-HIGH: frontdesk's RTP ports (others are counted, not impaired)")
    ap.add_argument("--stats", required=True, help="JSON counters written here at exit")
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.dports.split("-")) if args.dports else (0, 65535)
    rng = random.Random(args.seed)

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    sock.bind((0, 0))
    request(sock, args.queue, [attr(NFQA_CFG_CMD, struct.pack(">BxH", NFQNL_CFG_CMD_BIND, 0))], 1)
    request(sock, args.queue, [attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0xFFFF, NFQNL_COPY_PACKET))], 2)
    request(sock, args.queue, [attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 16384))], 3)
    sock.setblocking(False)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.SOL_SOCKET, SO_MARK, DUP_MARK)

    c = {"seen": 0, "dropped": 0, "delayed": 0, "duplicated": 0, "not_matching": 0, "dup_send_errors": 0}
    verdict_late_ms = []
    # (due, tiebreak, packet id or None, copy bytes or None)
    held = []
    tie = 0
    stop = []
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.append(1))
    print(f"impair: queue {args.queue} bound: loss {args.loss} dup {args.dup} jitter 0-{args.jitter_ms} ms", flush=True)

    def flush(now, everything=False):
        out = []
        while held and (everything or held[0][0] <= now):
            due, _, pid, copy = heapq.heappop(held)
            verdict_late_ms.append(max(0.0, now - due) * 1000.0)
            if pid is not None:
                out.append(message(NFQNL_MSG_VERDICT, args.queue, [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, pid))]))
            else:
                try:
                    raw.sendto(copy, ("127.0.0.1", 0))
                except OSError:
                    c["dup_send_errors"] += 1
        if out:
            sock.send(b"".join(out))

    while not stop:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        while ready:
            try:
                buf = sock.recv(1 << 17)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            for kind, payload in messages(buf):
                if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    continue
                a = attrs(payload)
                if NFQA_PACKET_HDR not in a:
                    continue
                pid = struct.unpack_from(">I", a[NFQA_PACKET_HDR])[0]
                pkt = a.get(NFQA_PAYLOAD, b"")
                c["seen"] += 1
                ihl = (pkt[0] & 0x0F) * 4 if pkt else 0
                ports = struct.unpack_from(">HH", pkt, ihl) if len(pkt) >= ihl + 8 and pkt[9] == 17 else None
                if ports is None or (args.sport and ports[0] != args.sport) or not lo <= ports[1] <= hi:
                    c["not_matching"] += 1
                    sock.send(message(NFQNL_MSG_VERDICT, args.queue, [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, pid))]))
                    continue
                if rng.random() < args.loss:
                    c["dropped"] += 1
                    sock.send(message(NFQNL_MSG_VERDICT, args.queue, [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_DROP, pid))]))
                    continue
                c["delayed"] += 1
                tie += 1
                heapq.heappush(held, (now + rng.random() * args.jitter_ms / 1000.0, tie, pid, None))
                if rng.random() < args.dup:
                    c["duplicated"] += 1
                    copy = bytearray(pkt)
                    copy[ihl + 6 : ihl + 8] = b"\0\0"
                    tie += 1
                    heapq.heappush(held, (now + rng.random() * args.jitter_ms / 1000.0, tie, None, bytes(copy)))
        flush(time.monotonic())

    flush(time.monotonic(), everything=True)
    c.update(
        {
            "loss": args.loss,
            "dup": args.dup,
            "jitter_ms": args.jitter_ms,
            "verdict_late_p50_ms": pct(verdict_late_ms, 0.5),
            "verdict_late_p99_ms": pct(verdict_late_ms, 0.99),
            "verdict_late_max_ms": max(verdict_late_ms) if verdict_late_ms else None,
        }
    )
    with open(args.stats, "w") as f:
        json.dump(c, f, sort_keys=True)
    print("impair: " + json.dumps(c, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
