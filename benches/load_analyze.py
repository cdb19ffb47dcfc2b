#!/usr/bin/env python3
"""Helpers and analysis for benches/load.sh (plain python3, standard library only).

Subcommands:
  ports K BLOCK            print K free loopback ports (each with port+1..+3 free, for SIPp's
                           media port+2 and RTCP), then the base of a free block of BLOCK ports
  wait-sip HOST:PORT SECS  wait until a SIP server answers OPTIONS over UDP (exit 1 on timeout)
  wait-tcp HOST:PORT SECS  wait until a TCP port accepts connections (exit 1 on timeout)
  analyze ...              combine one load run's capture, frontdesk log, SIPp output and CPU/RSS
                           samples into one JSON line (see --help)
  table RESULTS.jsonl      print the table of figures of every run in a results file

Definitions (also in BENCHMARKS.md):
  * CPU per call: frontdesk's utime+stime delta over the steady window, / window / N.
  * RSS per call: (VmRSS at the end of the window - VmRSS idle before the first call) / N.
  * Pacing error, capture: for each of frontdesk's RTP streams (source port, SSRC) and each
    talkspurt (marker bit, or a break in the +160 timestamp / +1 sequence run), packet n's wire
    time minus n x 20 ms, minus the smallest such value of the talkspurt: how far each packet left
    behind the talkspurt's best-kept schedule, as the caller's jitter buffer sees it.
  * Pacing error, log: frontdesk's own `pacing_p50_ms`/`pacing_p99_ms` (time handed to poll_rtp
    minus the packet's scheduled due time), per call; aggregated as the median of the per-call
    p50s and the median / largest of the per-call p99s.
  * Added latency, log: `latency_p50_ms`/`latency_p99_ms` (caller packet arrival -> its append
    queued for the WebSocket; a frame behind a gap waits for the reorder window), aggregated the
    same way.
  * LOAD_IMPAIR=1 (--impair-stats): benches/impair.py's counters go into the row as "impair";
    "carried" then does not judge dropped frames (the losses are on purpose).
"""

import argparse
import json
import math
import os
import re
import socket
import struct
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;]*m")
KV = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S+)')


# ---------------------------------------------------------------- ports and readiness


def _free(port, tcp=True):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        s.close()
        if tcp:
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.bind(("127.0.0.1", port))
            t.close()
        return True
    except OSError:
        return False


def cmd_ports(args):
    """Ports above Linux's default ephemeral range (32768-60999) and above the range the e2e
    tests pick from (21000-61000), so a load run does not collide with tests running beside it:
    single ports from 64000 up, the RTP block from 61000 up."""
    used = set()
    out = []
    port = 64000 + (os.getpid() % 100) * 8
    tries = 0
    while len(out) < args.k and tries < 5000:
        tries += 1
        port += 4
        if port > 65530:
            port = 64000
        if any(p in used for p in range(port, port + 4)):
            continue
        if all(_free(p) for p in range(port, port + 4)):
            out.append(port)
            used.update(range(port, port + 4))
    if len(out) < args.k:
        sys.exit("no free loopback ports")
    block = args.block + (args.block % 2)
    if block > 2900:
        sys.exit("RTP block too large (at most 1400 calls)")
    # First fit in 61000-64000: on a taken port, start again just above it (an even port), so a
    # block is found wherever 61000-64000 has room (another run of this script may hold its own
    # block, e.g. 61000-61463 for 200 calls, for as long as it runs).
    start = 61000
    while start + block <= 64000:
        taken = next((p for p in range(start, start + block) if p in used or not _free(p, tcp=False)), None)
        if taken is None:
            out.append(start)
            print(" ".join(str(p) for p in out))
            return
        start = taken + 1 + (taken + 1) % 2
    sys.exit(f"no free block of {block} RTP ports in 61000-64000 (other load runs or programs hold them)")


def cmd_wait_sip(args):
    host, port = args.addr.rsplit(":", 1)
    addr = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    local = "%s:%d" % sock.getsockname()
    deadline = time.time() + args.secs
    n = 0
    while time.time() < deadline:
        n += 1
        msg = (
            f"OPTIONS sip:probe@{args.addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKload{n}\r\n"
            f"From: <sip:probe@{local}>;tag=l{n}\r\nTo: <sip:probe@{args.addr}>\r\n"
            f"Call-ID: load-probe-{n}@bench\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(msg.encode(), addr)
        try:
            data, _ = sock.recvfrom(4096)
            if data.startswith(b"SIP/2.0 200"):
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"nothing answered OPTIONS on {args.addr} within {args.secs} s")


def cmd_wait_tcp(args):
    host, port = args.addr.rsplit(":", 1)
    deadline = time.time() + args.secs
    while time.time() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on {args.addr} after {args.secs} s")


# ---------------------------------------------------------------- statistics


def pct(values, q):
    """Nearest-rank percentile of an unsorted list (None when empty)."""
    if not values:
        return None
    v = sorted(values)
    rank = max(1, math.ceil(q * len(v) - 1e-9))
    return v[min(rank, len(v)) - 1]


def median(values):
    return pct(values, 0.5)


# ---------------------------------------------------------------- pcap


def read_pcap(path):
    """Yields (time_s, src_port, dst_port, rtp_header_bytes) of the UDP/IPv4 packets of a classic
    pcap file (dumpcap -P), Ethernet (lo) or Linux cooked link types."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        else:
            magic = struct.unpack(">I", head[:4])[0]
            endian = ">"
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            raise SystemExit(f"{path}: not a classic pcap file (use dumpcap -P)")
        frac = 1e-9 if magic == 0xA1B23C4D else 1e-6
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        l2 = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype)
        if l2 is None:
            raise SystemExit(f"{path}: unsupported link type {linktype}")
        rec = struct.Struct(endian + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, sub, incl, _orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl:
                return
            ip = data[l2:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            udp = ip[ihl:]
            if len(udp) < 8 + 12:
                continue
            sport, dport = struct.unpack(">HH", udp[:4])
            yield sec + sub * frac, sport, dport, udp[8:20]


def rtp_fields(hdr):
    b0, b1, seq, ts, ssrc = struct.unpack(">BBHII", hdr)
    if b0 >> 6 != 2:
        return None
    return (b1 & 0x80) != 0, b1 & 0x7F, seq, ts, ssrc


def schedule_errors(packets):
    """packets: [(t, marker, seq, ts)] of one stream in capture order. Returns (errors_ms, spurts,
    seq_gaps): per packet, its lateness against its talkspurt's best-kept 20 ms schedule."""
    errors = []
    spurts = 0
    gaps = 0
    cur = []

    def flush():
        if not cur:
            return
        t0, ts0 = cur[0][0], cur[0][3]
        offs = [t - ((ts - ts0) % (1 << 32)) / 8000.0 for (t, _m, _s, ts) in cur]
        anchor = min(offs)
        errors.extend((o - anchor) * 1000.0 for o in offs)

    prev = None
    for p in packets:
        t, marker, seq, ts = p
        if prev is not None:
            seq_ok = seq == (prev[2] + 1) % 65536
            if not seq_ok:
                gaps += 1
            if marker or not seq_ok or ts != (prev[3] + 160) % (1 << 32):
                flush()
                cur = []
                spurts += 1
        else:
            spurts = 1
        cur.append(p)
        prev = p
    flush()
    return errors, spurts, gaps


def interval_errors(packets):
    """|wire interval - media interval| of consecutive packets of one stream, in ms (for SIPp's own
    sending, whose rtp_stream has no talkspurt structure to anchor a schedule on)."""
    out = []
    for a, b in zip(packets, packets[1:]):
        dts = ((b[3] - a[3]) % (1 << 32)) / 8000.0
        out.append(abs((b[0] - a[0]) - dts) * 1000.0)
    return out


def analyze_pcap(path, sipp_mp, win):
    """Outgoing (frontdesk -> SIPp media port) and incoming (SIPp -> frontdesk) RTP."""
    out_streams = {}
    in_streams = {}
    total = 0
    for t, sport, dport, hdr in read_pcap(path):
        f = rtp_fields(hdr)
        if f is None:
            continue
        marker, pt, seq, ts, ssrc = f
        if pt != 0:
            continue
        total += 1
        if dport == sipp_mp and sport != sipp_mp:
            out_streams.setdefault((sport, ssrc), []).append((t, marker, seq, ts))
        elif sport == sipp_mp and dport != sipp_mp:
            in_streams.setdefault(dport, []).append((t, marker, seq, ts))

    def summarize(streams, intervals):
        errs_all, errs_win, spurts, gaps, packets = [], [], 0, 0, 0  # noqa
        per_port = {}
        for key, pk in streams.items():
            e, s, g = schedule_errors(pk)
            if intervals:
                e = [0.0] + interval_errors(pk)
            errs_all.extend(e)
            errs_win.extend(x for x, p in zip(e, pk) if win[0] <= p[0] <= win[1])
            spurts += s
            gaps += g
            packets += len(pk)
            port = key[0] if isinstance(key, tuple) else key
            per_port[port] = per_port.get(port, 0) + len(pk)
        r = {
            "streams": len(streams),
            "packets": packets,
            "spurts": spurts,
            "seq_gaps": gaps,
            "err_p50_ms": pct(errs_all, 0.5),
            "err_p99_ms": pct(errs_all, 0.99),
            "err_max_ms": max(errs_all) if errs_all else None,
        }
        r.update(
            {
                "win_samples": len(errs_win),
                "win_err_p50_ms": pct(errs_win, 0.5),
                "win_err_p99_ms": pct(errs_win, 0.99),
                "win_err_max_ms": max(errs_win) if errs_win else None,
            }
        )
        return r, per_port

    out, out_ports = summarize(out_streams, False)
    # SIPp's own sending: interval errors (|wire interval - 20 ms|), for context.
    inc, _ = summarize(in_streams, True)
    return {"rtp_packets": total, "out": out, "in": inc}, out_ports


# ---------------------------------------------------------------- frontdesk log


def parse_log(path):
    calls = {}
    summaries = []
    ended = []
    problems = []
    send_failures = []
    incoming = 0
    answered = {}
    with open(path, errors="replace") as f:
        for raw in f:
            line = ANSI.sub("", raw.rstrip("\n"))
            m = re.search(r"call\{call_id=([^}\s]+)\}", line)
            cid = m.group(1) if m else None
            if " WARN " in line or " ERROR " in line or "panicked" in line:
                problems.append(line[:300])
            if "send failed" in line:
                send_failures.append(line[:300])
            if "incoming call" in line:
                incoming += 1
            if ": call answered" in line:
                kv = dict(KV.findall(line))
                lp = kv.get("local_rtp", "")
                if cid and ":" in lp:
                    answered[cid] = int(lp.rsplit(":", 1)[1])
            if ": media summary" in line:
                kv = {k: v.strip('"') for k, v in KV.findall(line.split(": media summary", 1)[1])}
                kv["call_id"] = cid
                summaries.append(kv)
            if ": call ended" in line:
                kv = {k: v.strip('"') for k, v in KV.findall(line.split(": call ended", 1)[1])}
                kv["call_id"] = cid
                ended.append(kv)
    return {
        "incoming": incoming,
        "answered": answered,
        "summaries": summaries,
        "ended": ended,
        "problems": problems,
        "send_failures": send_failures,
    }


def num(d, k):
    try:
        return float(d.get(k, "nan"))
    except ValueError:
        return float("nan")


def log_figures(log):
    s = log["summaries"]
    f = {}
    for k in ("lost", "late", "concealed", "inserted", "skipped", "duplicates", "barge_ins",
              "truncates", "server_errors", "appends", "packets_out"):
        f[k] = int(sum(num(x, k) for x in s if not math.isnan(num(x, k))))
    for k in ("latency_p50_ms", "pacing_p50_ms"):
        f[k] = median([num(x, k) for x in s if not math.isnan(num(x, k))])
    for k in ("latency_p99_ms", "pacing_p99_ms"):
        vals = [num(x, k) for x in s if not math.isnan(num(x, k))]
        f[k + "_median_call"] = median(vals)
        f[k + "_worst_call"] = max(vals) if vals else None
    for k in ("clock_frames",):
        f[k] = int(sum(num(x, k) for x in s if not math.isnan(num(x, k))))
    for k in ("latency_max_ms", "pacing_max_ms", "max_depth_ms", "jitter_ms", "reorder_window_ms"):
        vals = [num(x, k) for x in s if not math.isnan(num(x, k))]
        f[k] = max(vals) if vals else None
    reasons = {}
    for e in log["ended"]:
        r = e.get("end_reason", "?")
        reasons[r] = reasons.get(r, 0) + 1
    f["end_reasons"] = reasons
    f["calls_summarized"] = len(s)
    f["incoming"] = log["incoming"]
    f["problems"] = len(log["problems"])
    f["problem_samples"] = log["problems"][:5]
    f["send_failures"] = len(log["send_failures"])
    f["send_failure_samples"] = log["send_failures"][:3]
    return f


# ---------------------------------------------------------------- one run


def read_kv(path):
    d = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.strip().split("=", 1)
                d[k] = v
    return d


def sipp_counts(path):
    text = open(path, errors="replace").read() if os.path.exists(path) else ""
    res = {}
    for key, label in (("successful", "Successful call"), ("failed", "Failed call")):
        m = re.findall(label + r"\s*\|\s*\d+\s*\|\s*(\d+)", text)
        if m:
            res[key] = int(m[-1])
    # SIP retransmissions (sent and received), from the last statistics screen's message lines.
    screens = text.split("Messages  Retrans")
    if len(screens) > 1:
        res["retransmissions"] = sum(
            int(x) for x in re.findall(r"(?:-{10}>|<-{10})\s+(?:E-RTD\d\s+)?\d+\s+(\d+)", screens[-1]))
    return res


def cmd_analyze(args):
    m = read_kv(args.metrics)
    n = args.n
    hz = float(m.get("clk_tck", 100))
    window = float(m["t1"]) - float(m["t0"])

    def cpu(prefix):
        a, b = m.get(prefix + "_ticks0"), m.get(prefix + "_ticks1")
        if a is None or b is None or a == "" or b == "":
            return None
        return (int(b) - int(a)) / hz / window  # cores

    fd_cores = cpu("fd")
    us0, us1 = m.get("fd_user_sys0", "").split(), m.get("fd_user_sys1", "").split()
    if len(us0) == 2 and len(us1) == 2:
        user = (int(us1[0]) - int(us0[0])) / hz / window
        system = (int(us1[1]) - int(us0[1])) / hz / window
    else:
        user = system = None
    res = {
        "n": n,
        "rate_cps": args.rate,
        "hold_s": args.hold,
        "window_s": round(window, 2),
        "concurrent_start": int(m.get("active0", 0)),
        "concurrent_end": int(m.get("active1", 0)),
        "fd_cores": fd_cores,
        "fd_ms_cpu_per_s_per_call": fd_cores * 1000.0 / n,
        "fd_pct_core_per_call": fd_cores * 100.0 / n,
        "fd_user_cores": user,
        "fd_system_cores": system,
        "sim_cores": cpu("sim"),
        "sipp_cores": cpu("sipp"),
        "dumpcap_cores": cpu("dump"),
        "impair_cores": cpu("imp"),
        "machine_busy_cores": None,
        "rss_idle_kib": int(m.get("rss_idle", 0)),
        "rss_during_kib": int(m.get("rss1", 0)),
        "rss_per_call_kib": (int(m.get("rss1", 0)) - int(m.get("rss_idle", 0))) / n,
        "sipp_rc": int(m.get("sipp_rc", -1)),
    }
    if m.get("build"):
        res["build"] = m["build"]
    if m.get("binary"):
        res["binary"] = m["binary"]
    # Caller packets the kernel dropped at frontdesk's RTP sockets (full receive buffer) in the window.
    if m.get("rtp_drops0", "").isdigit() and m.get("rtp_drops1", "").isdigit():
        res["rtp_socket_drops"] = int(m["rtp_drops1"]) - int(m["rtp_drops0"])
    # LOAD_SYSCALLS=1: system calls and context switches per call-second over the window.
    sc = {k[3:]: int(v) for k, v in m.items() if k.startswith("sc_") and v.isdigit()}
    if sc:
        res["syscalls_per_call_s"] = {k: round(v / window / n, 2) for k, v in sorted(sc.items())}
    if m.get("stat_busy0") and m.get("stat_total1"):
        # Busy share of all CPU time of the box (every core), in cores.
        busy = int(m["stat_busy1"]) - int(m["stat_busy0"])
        total = int(m["stat_total1"]) - int(m["stat_total0"])
        res["machine_cores"] = int(m.get("cores", 0))
        res["machine_busy_cores"] = busy / total * res["machine_cores"] if total > 0 else None
        if m.get("stat_steal0") and m.get("stat_steal1") and total > 0:
            steal = int(m["stat_steal1"]) - int(m["stat_steal0"])
            res["steal_cores"] = steal / total * res["machine_cores"]
        ours = sum(x or 0 for x in (fd_cores, res["sim_cores"], res["sipp_cores"], res["dumpcap_cores"], res["impair_cores"]))
        if res["machine_busy_cores"] is not None:
            # CPU used by anything else on the box during the window (other builds, tests...).
            res["other_load_cores"] = max(0.0, res["machine_busy_cores"] - ours)
    res.update({"sipp_" + k: v for k, v in sipp_counts(args.sipp_out).items()})
    log = parse_log(args.log)
    res["log"] = log_figures(log)
    if args.pcap and os.path.exists(args.pcap):
        cap, out_ports = analyze_pcap(args.pcap, args.sipp_mp, (float(m["t0"]), float(m["t1"])))
        # Echo completeness: per call, packets frontdesk says it sent = packets on the wire.
        mismatched = 0
        missing = 0
        pk_out = {s["call_id"]: int(num(s, "packets_out")) for s in log["summaries"] if s.get("call_id")}
        for cid, port in log["answered"].items():
            if cid in pk_out and out_ports.get(port, 0) != pk_out[cid]:
                mismatched += 1
                missing += pk_out[cid] - out_ports.get(port, 0)
        cap["calls_with_wire_count_mismatch"] = mismatched
        cap["packets_out_not_on_wire"] = missing
        cap["calls_without_echo"] = sum(1 for p in log["answered"].values() if out_ports.get(p, 0) == 0)
        res["capture"] = cap
        if m.get("dump_stats"):
            res["capture"]["dumpcap"] = m["dump_stats"]
    if args.impair_stats:
        # LOAD_IMPAIR=1: what impair.py did to the caller's RTP, and how many packets the
        # iptables rule handed it (equal to its "seen" when nothing else was queued).
        try:
            res["impair"] = json.load(open(args.impair_stats))
        except (OSError, ValueError) as e:
            res["impair"] = {"error": f"no impair.py counters: {e}"}
        if m.get("impair_rule_packets", "").isdigit():
            res["impair"]["rule_packets"] = int(m["impair_rule_packets"])
    lg = res["log"]
    res["zero_lost"] = (
        lg["lost"] == 0
        and lg["late"] == 0
        and lg["calls_summarized"] == n
        and res.get("sipp_successful", 0) == n
    )
    # Caller frames dropped (lost in the network or too late to play), as a share of the frames
    # handed to the session.
    dropped = lg["lost"] + lg["late"]
    res["dropped_frames_pct"] = 100.0 * dropped / lg["appends"] if lg["appends"] else None
    pace_p99 = res.get("capture", {}).get("out", {}).get("win_err_p99_ms")
    if pace_p99 is None:
        pace_p99 = lg["pacing_p99_ms_median_call"]
    res["signalling_ok"] = (
        res["sipp_rc"] == 0
        and res.get("sipp_successful", 0) == n
        and res["concurrent_start"] == n
        and res["concurrent_end"] == n
        and lg["end_reasons"].get("remote-bye", 0) == n
    )
    # Carried: every call up at once and completed, and the media still usable: at most 0.1 % of
    # caller frames dropped (not judged under impairment, whose losses are on purpose) and a p99
    # pacing error of at most 20 ms (one packet time).
    res["carried"] = (
        res["signalling_ok"]
        and (
            "impair" in res
            or (res["dropped_frames_pct"] is not None and res["dropped_frames_pct"] <= 0.1)
        )
        and pace_p99 is not None
        and pace_p99 <= 20.0
    )
    line = json.dumps(res, sort_keys=True)
    with open(args.out, "a") as f:
        f.write(line + "\n")
    print(line)


# ---------------------------------------------------------------- table


def fmt(v, spec="{:.2f}"):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return spec.format(v)


def cmd_table(args):
    rows = [json.loads(l) for l in open(args.results) if l.strip()]
    if not rows:
        sys.exit("no results")
    cols = [
        ("N", lambda r: str(r["n"])),
    ]
    if any(r.get("build") for r in rows):
        cols.append(("build", lambda r: r.get("build", "")))
    impaired = any(r.get("impair") for r in rows)
    if impaired:
        cols.append(("impair", lambda r: "loss {:g} % dup {:g} % jitter 0-{:g} ms".format(
            100 * r["impair"]["loss"], 100 * r["impair"]["dup"], r["impair"]["jitter_ms"])
            if r.get("impair", {}).get("loss") is not None else ("?" if r.get("impair") else "-")))
    if any(r.get("syscalls_per_call_s") for r in rows):
        cols.append(("syscalls/s/call", lambda r: fmt((r.get("syscalls_per_call_s") or {}).get("sys_enter"), "{:.0f}")))
    cols += [
        ("ok calls", lambda r: f'{r.get("sipp_successful", 0)}/{r["n"]}'),
        ("fd cores", lambda r: fmt(r["fd_cores"], "{:.3f}")),
        ("ms CPU/s/call", lambda r: fmt(r["fd_ms_cpu_per_s_per_call"])),
        ("% core/call", lambda r: fmt(r["fd_pct_core_per_call"], "{:.3f}")),
        ("RSS KiB/call", lambda r: fmt(r["rss_per_call_kib"], "{:.0f}")),
        ("pace p50/p99 wire", lambda r: "/".join(
            fmt(r.get("capture", {}).get("out", {}).get(k)) for k in ("win_err_p50_ms", "win_err_p99_ms"))),
        ("pace p50/p99 log", lambda r: fmt(r["log"]["pacing_p50_ms"]) + "/" + fmt(r["log"]["pacing_p99_ms_median_call"])
            + " (" + fmt(r["log"]["pacing_p99_ms_worst_call"]) + ")"),
        ("lat p50/p99 log", lambda r: fmt(r["log"]["latency_p50_ms"], "{:.1f}") + "/" + fmt(r["log"]["latency_p99_ms_median_call"], "{:.1f}")
            + " (" + fmt(r["log"]["latency_p99_ms_worst_call"], "{:.1f}") + ")"),
        ("lost/late/concealed", lambda r: f'{r["log"]["lost"]}/{r["log"]["late"]}/{r["log"]["concealed"]}'),
    ]
    if impaired:
        cols += [
            ("impair dropped/dup", lambda r: f'{r["impair"].get("dropped", "?")}/{r["impair"].get("duplicated", "?")}'
                if r.get("impair") else "-"),
            ("fd dups", lambda r: str(r["log"]["duplicates"])),
            ("max reorder win ms", lambda r: fmt(r["log"].get("reorder_window_ms"), "{:.0f}")),
            ("impair cores", lambda r: fmt(r.get("impair_cores"), "{:.2f}")),
        ]
    cols += [
        ("dropped %", lambda r: fmt(r.get("dropped_frames_pct"), "{:.3f}")),
        ("sim+sipp cores", lambda r: fmt((r["sim_cores"] or 0) + (r["sipp_cores"] or 0), "{:.2f}")),
        ("box busy", lambda r: fmt(r.get("machine_busy_cores"), "{:.2f}")),
        ("other load", lambda r: fmt(r.get("other_load_cores"), "{:.2f}")),
    ]
    table = [[h for h, _ in cols]] + [[f(r) for _, f in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    if args.row_only:
        row = table[-1]
        print("| " + " | ".join(c.ljust(widths[j]) for j, c in enumerate(row)) + " |")
        return
    for i, row in enumerate(table):
        print("| " + " | ".join(c.ljust(widths[j]) for j, c in enumerate(row)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    print("pace wire = capture, each packet vs its talkspurt's best-kept 20 ms schedule, steady window;")
    print("pace log / lat log = frontdesk's media summary: median of per-call p50 / median of per-call p99 (worst call);")
    print("lost/late/concealed = frontdesk's jitter-buffer counters summed over all calls; dropped % = (lost + late) / frames appended.")
    if impaired:
        print("impair = LOAD_IMPAIR (caller RTP -> frontdesk only); impair dropped/dup = packets impair.py dropped / sent twice;"
              " fd dups = duplicates frontdesk dropped; max reorder win = largest reorder window of any call.")
    print("cores = CPU time / window (1.0 = one core busy); box busy = all processes; other load = box busy minus frontdesk, sim, SIPp, dumpcap"
          + (", impair.py." if impaired else "."))
    good = [r for r in rows if r["zero_lost"] and (r.get("capture", {}).get("out", {}).get("win_err_p99_ms") or 99) < 2.0]
    good_log = [r for r in rows if r["zero_lost"] and (r["log"]["pacing_p99_ms_worst_call"] or 99) < 2.0]
    carried = [r for r in rows if r["carried"]]
    print("largest N with zero lost frames and p99 pacing error < 2 ms (wire): "
          + (str(max(r["n"] for r in good)) if good else "none"))
    print("largest N with zero lost frames and p99 pacing error < 2 ms (log, worst call): "
          + (str(max(r["n"] for r in good_log)) if good_log else "none"))
    print("largest N carried (all calls up at once and completed; <= 0.1 % of caller frames dropped, not judged when impaired;"
          " p99 pacing error <= 20 ms): " + (str(max(r["n"] for r in carried)) if carried else "none"))
    # A/B runs: B's CPU per call over A's, per N (A is the row just before its B).
    for a, b in zip(rows, rows[1:]):
        if a.get("build") == "A" and b.get("build") == "B" and a["n"] == b["n"]:
            print(f'N={b["n"]}: B/A ratio of CPU per call {b["fd_ms_cpu_per_s_per_call"] / a["fd_ms_cpu_per_s_per_call"]:.2f}'
                  f' ({fmt(b["fd_ms_cpu_per_s_per_call"])} / {fmt(a["fd_ms_cpu_per_s_per_call"])} ms/s/call;'
                  f' A = {a.get("binary", "?")}, B = {b.get("binary", "?")})')
    for r in rows:
        if r.get("syscalls_per_call_s"):
            print(f'N={r["n"]}{" " + r["build"] if r.get("build") else ""}: per call-second '
                  + ", ".join(f"{k} {v:g}" for k, v in r["syscalls_per_call_s"].items()))
    for r in rows:
        lg = r["log"]
        notes = []
        imp = r.get("impair")
        if imp:
            if "error" in imp:
                notes.append(imp["error"])
            else:
                notes.append(f'impair.py saw {imp.get("seen")} caller RTP packets (the rule queued {imp.get("rule_packets", "?")},'
                             f' {imp.get("not_matching")} not matching), delayed {imp.get("delayed")}, dropped {imp.get("dropped")},'
                             f' duplicated {imp.get("duplicated")}, lost in the kernel queue {imp.get("kernel_queue_dropped", "?")}'
                             f' + {imp.get("kernel_user_dropped", "?")} (socket full); SIPp itself skipped'
                             f' {imp.get("sender_seq_skipped", "?")} sequence numbers and sent {imp.get("sender_out_of_order", "?")} out of order;'
                             f' largest gap between two packets of one call as impair.py read them {fmt(imp.get("sender_gap_max_ms"))} ms (p99'
                             f' {fmt(imp.get("sender_gap_p99_ms"))}); impair.py sent late p50/p99/max'
                             f' {fmt(imp.get("send_late_p50_ms"))}/{fmt(imp.get("send_late_p99_ms"))}/{fmt(imp.get("send_late_max_ms"))} ms')
        if lg["problems"]:
            notes.append(f'{lg["problems"]} WARN/ERROR lines, e.g. {lg["problem_samples"][:1]}')
        if r.get("sipp_retransmissions"):
            notes.append(f'{r["sipp_retransmissions"]} SIP retransmissions')
        if r.get("rtp_socket_drops"):
            notes.append(f'{r["rtp_socket_drops"]} caller packets dropped by the kernel at full frontdesk RTP sockets in the window')
        if lg.get("send_failures"):
            notes.append(f'{lg["send_failures"]} failed RTP/RTCP sends, e.g. {lg["send_failure_samples"][:1]}')
        if lg["barge_ins"] or lg["truncates"]:
            notes.append(f'{lg["barge_ins"]} barge-ins / {lg["truncates"]} truncates (echo cut by the next sentence)')
        cap = r.get("capture", {})
        if cap.get("calls_with_wire_count_mismatch"):
            notes.append(f'{cap["calls_with_wire_count_mismatch"]} calls whose packets on the wire != packets_out'
                         f' ({cap.get("packets_out_not_on_wire")} packets handed out but not on the wire)')
        if cap.get("calls_without_echo"):
            notes.append(f'{cap["calls_without_echo"]} calls without any echo')
        if cap.get("out", {}).get("seq_gaps"):
            notes.append(f'{cap["out"]["seq_gaps"]} sequence gaps in frontdesk RTP on the wire')
        if not r.get("signalling_ok", True):
            notes.append(f'signalling failed: SIPp rc {r["sipp_rc"]}, {r.get("sipp_successful", 0)} successful calls,'
                         f' end reasons {lg["end_reasons"]}')
        if r["concurrent_start"] != r["n"] or r["concurrent_end"] != r["n"]:
            notes.append(f'only {r["concurrent_start"]}->{r["concurrent_end"]} calls up during the window')
        if notes:
            print(f'N={r["n"]}: ' + "; ".join(notes))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("k", type=int)
    p.add_argument("block", type=int)
    p.set_defaults(func=cmd_ports)
    p = sub.add_parser("wait-sip")
    p.add_argument("addr")
    p.add_argument("secs", type=float)
    p.set_defaults(func=cmd_wait_sip)
    p = sub.add_parser("wait-tcp")
    p.add_argument("addr")
    p.add_argument("secs", type=float)
    p.set_defaults(func=cmd_wait_tcp)
    p = sub.add_parser("analyze")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--hold", type=float, required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--sipp-out", required=True)
    p.add_argument("--pcap")
    p.add_argument("--sipp-mp", type=int, required=True)
    p.add_argument("--impair-stats", help="impair.py's counters (LOAD_IMPAIR=1)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_analyze)
    p = sub.add_parser("table")
    p.add_argument("results")
    p.add_argument("--row-only", action="store_true", help="print the last run's row only")
    p.set_defaults(func=cmd_table)
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        sys.exit(0)
