#!/usr/bin/env python3
"""Network impairment for benches/load.sh (plain python3, standard library only; root).

Takes the packets an iptables rule hands to netfilter queue QUEUE (the NFQUEUE target; the rule
in load.sh matches only the caller's RTP towards frontdesk) and, per packet, independently:

  * drops it with probability --loss (never seen by frontdesk);
  * otherwise delays it by a uniform 0..--jitter-ms, so packets overtake each other (a reordering
    caller);
  * and with probability --dup (if not dropped) delivers it twice, each copy with its own delay.

The original is dropped at once (verdict NF_DROP) and each delivery is an exact copy sent at its
due time through a raw IP socket (same addresses and ports, UDP checksum zeroed, allowed for UDP
over IPv4, RFC 768) whose packets carry firewall mark 1, which the rule does not match. Holding
the original instead (a late NF_ACCEPT) would keep it charged to the sender's socket send buffer:
SIPp sends all calls' RTP from one socket, whose 208 KiB fill at 200 calls with 30 ms held on
average, and SIPp's sender then stalls for all calls at once.

This is the model of tests/rtp_caller.py (--jitter-ms 60 --loss 0.05 --dup 0.02), applied to
SIPp's packets on the way, because this kernel has neither the netem nor the prio qdisc. Run it
only inside a network namespace of its own (load.sh does: `unshare -n`).

At SIGTERM/SIGINT it sends every copy it still holds and writes its counters as JSON to --stats:
packets seen, dropped (total and per destination port), delayed, duplicated, packets that did not
match --sport/--dports (passed unimpaired; 0 when the rule is right), sequence numbers the sender
itself skipped or sent out of order and its largest gap between two packets of one stream (before
any impairment), the kernel's drops for the queue (queue full / netlink socket full: packets lost
without being seen, on top of --loss), and how late it delivered against the due times (p50/p99/max
ms: its own scheduling error, which adds to the intended delay).

The netfilter queue protocol (nfnetlink_queue, NETLINK_NETFILTER subsystem 3) is spoken directly:
NFQNL_MSG_CONFIG (bind, copy mode packet, queue length), NFQNL_MSG_PACKET in,
NFQNL_MSG_VERDICT_BATCH out; see linux/netfilter/nfnetlink_queue.h.
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
SO_SNDBUFFORCE = 32
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_PAYLOAD = 10
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NF_DROP = 0
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
    raw.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 16 << 20)

    c = {"seen": 0, "dropped": 0, "delayed": 0, "duplicated": 0, "not_matching": 0, "send_errors": 0,
         "sender_seq_skipped": 0, "sender_out_of_order": 0}
    last_seq = {}
    last_at = {}
    sender_gaps_ms = []
    dropped_by_port = {}
    late_ms = []
    # (due, tiebreak, packet to send)
    held = []
    tie = 0
    stop = []
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.append(1))
    print(f"impair: queue {args.queue} bound: loss {args.loss} dup {args.dup} jitter 0-{args.jitter_ms} ms", flush=True)

    def flush(now, everything=False):
        while held and (everything or held[0][0] <= now):
            due, _, pkt = heapq.heappop(held)
            late_ms.append(max(0.0, now - due) * 1000.0)
            try:
                raw.sendto(pkt, ("127.0.0.1", 0))
            except OSError:
                c["send_errors"] += 1

    while not stop:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
        try:
            ready, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        last_id = None
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
                last_id = struct.unpack_from(">I", a[NFQA_PACKET_HDR])[0]
                pkt = a.get(NFQA_PAYLOAD, b"")
                c["seen"] += 1
                ihl = (pkt[0] & 0x0F) * 4 if pkt else 0
                ports = struct.unpack_from(">HH", pkt, ihl) if len(pkt) >= ihl + 8 and pkt[9] == 17 else None
                copy = bytearray(pkt)
                if ports is not None:
                    copy[ihl + 6 : ihl + 8] = b"\0\0"
                if ports is None or (args.sport and ports[0] != args.sport) or not lo <= ports[1] <= hi:
                    c["not_matching"] += 1
                    tie += 1
                    heapq.heappush(held, (now, tie, bytes(copy)))
                    continue
                if len(pkt) >= ihl + 12 and pkt[ihl + 8] >> 6 == 2:
                    # The sender's own sequence (RTP header after the 8-byte UDP header): numbers
                    # it never sent (frontdesk counts them as lost too) or sent out of order.
                    seq = struct.unpack_from(">H", pkt, ihl + 10)[0]
                    prev = last_seq.get(ports[1])
                    if prev is not None:
                        step = (seq - prev) & 0xFFFF
                        if 1 < step < 0x8000:
                            c["sender_seq_skipped"] += step - 1
                        elif step == 0 or step >= 0x8000:
                            c["sender_out_of_order"] += 1
                        sender_gaps_ms.append((now - last_at[ports[1]]) * 1000.0)
                    last_seq[ports[1]] = seq
                    last_at[ports[1]] = now
                if rng.random() < args.loss:
                    c["dropped"] += 1
                    dropped_by_port[ports[1]] = dropped_by_port.get(ports[1], 0) + 1
                    continue
                c["delayed"] += 1
                copies = 1
                if rng.random() < args.dup:
                    c["duplicated"] += 1
                    copies = 2
                for _ in range(copies):
                    tie += 1
                    heapq.heappush(held, (now + rng.random() * args.jitter_ms / 1000.0, tie, bytes(copy)))
        if last_id is not None:
            # Every queued packet so far is dropped: its copies are in `held`.
            sock.send(message(NFQNL_MSG_VERDICT_BATCH, args.queue, [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_DROP, last_id))]))
        flush(time.monotonic())

    flush(time.monotonic(), everything=True)
    # The kernel's own drops for this queue: queue full, or the netlink socket full (user).
    try:
        for line in open("/proc/net/netfilter/nfnetlink_queue"):
            f = line.split()
            if len(f) >= 7 and f[0] == str(args.queue):
                c["kernel_queue_dropped"], c["kernel_user_dropped"] = int(f[5]), int(f[6])
    except OSError:
        pass
    c.update(
        {
            "dropped_by_port": {str(k): v for k, v in sorted(dropped_by_port.items())},
            "loss": args.loss,
            "dup": args.dup,
            "jitter_ms": args.jitter_ms,
            "send_late_p50_ms": pct(late_ms, 0.5),
            "send_late_p99_ms": pct(late_ms, 0.99),
            "send_late_max_ms": max(late_ms) if late_ms else None,
            "sender_gap_p99_ms": pct(sender_gaps_ms, 0.99),
            "sender_gap_max_ms": max(sender_gaps_ms) if sender_gaps_ms else None,
        }
    )
    with open(args.stats, "w") as f:
        json.dump(c, f, sort_keys=True)
    print("impair: " + json.dumps(c, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
