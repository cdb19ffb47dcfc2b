#!/usr/bin/env bash
# Load benchmark of frontdesk (issue 3): N concurrent calls on this machine, everything on 127.0.0.1.
#
#   benches/load.sh [N...]            default: 10 25 50 100 200
#
# For each N: starts `frontdesk sim --echo` (the Realtime simulator returning each caller turn as the
# agent's reply) and `frontdesk serve` (release build, temp db, a dialplan with an empty greeting),
# captures the RTP on lo with dumpcap, and runs SIPp (tests/sipp/uac_load.xml) with N calls at
# LOAD_RATE calls/s, each streaming a spoken sentence followed by silence in a loop (rtp_stream)
# for the hold time; the echo of every sentence comes back as frontdesk's paced RTP. Once all N
# calls are up it measures a steady window of LOAD_STEADY_S seconds: frontdesk's CPU
# (/proc/PID/stat utime+stime) and RSS (VmRSS, against its idle RSS before the first call), and the
# CPU of the simulator, SIPp, dumpcap and the whole box. benches/load_analyze.py then combines the
# capture (pacing error of frontdesk's RTP on the wire), frontdesk's log ("media summary" per call:
# lost/late/concealed frames, added latency and pacing error percentiles) and SIPp's counts into
# one JSON line per N in $LOAD_OUT/results.jsonl, and prints the table at the end.
#
# Knobs (environment):
#   LOAD_RATE=20        call attempts per second (SIPp -r)
#   LOAD_STEADY_S=20    length of the measured window, seconds
#   LOAD_CAPTURE=1      0: no dumpcap capture (no wire pacing figures; less load on the box)
#   LOAD_PERF=0         1: `perf record` frontdesk during the window ($LOAD_OUT/N/perf.data;
#                       perf report -i ... --no-children --sort dso,sym)
#   LOAD_PERF_ARGS=     extra perf record arguments, e.g. "--call-graph dwarf,16384 -F 250"
#   LOAD_KEEP_PCAP=0    1: keep $LOAD_OUT/N/rtp.pcap (deleted once analysed otherwise)
#   LOAD_BUILD=1        0: use target/release/frontdesk as it is
#   LOAD_FRONTDESK=PATH another frontdesk binary (implies no build)
#   LOAD_BASELINE=PATH  A/B in one run: for each N, first this binary (A), then the one under test
#                       (B: LOAD_FRONTDESK or the release build), both against the simulator of B;
#                       the table gets a build column and the B/A ratio of CPU per call
#   LOAD_SYSCALLS=0     1: count frontdesk's system calls and context switches in the window
#                       (`perf stat` on tracepoints; reported per call-second in results.jsonl)
#   LOAD_IMPAIR=0       1: impair the caller's RTP towards frontdesk (only that direction, only
#                       RTP: SIP, the WebSocket and frontdesk's RTP are untouched): each packet
#                       5 % lost, else delayed uniform 0-60 ms (so reordered), 2 % also duplicated
#                       (the copy with its own delay); tests/rtp_caller.py's model. An iptables
#                       NFQUEUE rule (UDP from SIPp's media port to frontdesk's RTP range) hands
#                       the packets to benches/impair.py, which gives the verdicts late or drops
#                       them (this kernel has no netem or prio qdisc for `tc`). Implies
#                       LOAD_NETNS=1. LOAD_IMPAIR_LOSS / LOAD_IMPAIR_DUP (fractions) and
#                       LOAD_IMPAIR_JITTER_MS change the figures; the table gets an impair column.
#   LOAD_NETNS=0        1: run everything inside a network namespace of its own (`unshare -n`,
#                       only `lo`, brought up): no other program's ports or traffic in the way
#   LOAD_OUT=target/load/<date>   where logs, captures and results go
#
# Bounded: every wait has a deadline, SIPp runs under `timeout`, and every process this script
# starts is killed at exit (trap), by PID. Needs: sipp (sip-tester), espeak-ng, sox, dumpcap
# (tshark; root or capture rights), python3; for LOAD_NETNS/LOAD_IMPAIR also root, unshare
# (util-linux) and ip (iproute2), and for LOAD_IMPAIR iptables (Debian `iptables`, not in the
# CI package list: only this bench uses it) with a kernel that has NFQUEUE.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(10 25 50 100 200)
RATE="${LOAD_RATE:-20}"
STEADY="${LOAD_STEADY_S:-20}"
CAPTURE="${LOAD_CAPTURE:-1}"
PERF="${LOAD_PERF:-0}"
OUT="${LOAD_OUT:-$ROOT/target/load/$(date +%Y%m%d-%H%M%S)}"
ANALYZE=(python3 "$ROOT/benches/load_analyze.py")
FD="${LOAD_FRONTDESK:-$ROOT/target/release/frontdesk}"
# The simulator is always B's, so an A/B run compares frontdesk alone.
SIM="$FD"
BASELINE="${LOAD_BASELINE:-}"
SYSCALLS="${LOAD_SYSCALLS:-0}"
IMPAIR="${LOAD_IMPAIR:-0}"
NETNS="${LOAD_NETNS:-0}"
[ "$IMPAIR" != 1 ] || NETNS=1
HZ="$(getconf CLK_TCK)"
CORES="$(nproc)"

for n in "${NS[@]}"; do
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 1400 ] || { echo "N must be 1..1400: $n" >&2; exit 2; }
done
for tool in sipp espeak-ng sox python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
if [ "$CAPTURE" = 1 ]; then command -v dumpcap >/dev/null || { echo "missing dumpcap (tshark); or LOAD_CAPTURE=0" >&2; exit 2; }; fi
if [ "$PERF" = 1 ] || [ "$SYSCALLS" = 1 ]; then command -v perf >/dev/null || { echo "missing perf (linux-perf)" >&2; exit 2; }; fi
if [ "$NETNS" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "LOAD_NETNS/LOAD_IMPAIR need root (unshare -n)" >&2; exit 2; }
  for tool in unshare ip; do command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }; done
fi
if [ "$IMPAIR" = 1 ]; then command -v iptables >/dev/null || { echo "missing iptables (Debian iptables) for LOAD_IMPAIR=1" >&2; exit 2; }; fi

if [ "${LOAD_BUILD:-1}" = 1 ] && [ -z "${LOAD_FRONTDESK:-}" ]; then
  cargo build --release --quiet
fi
[ -x "$FD" ] || { echo "no $FD; run cargo build --release" >&2; exit 2; }
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "no baseline binary $BASELINE" >&2; exit 2; }

# A network namespace of our own (built above, outside it): the script runs again inside it, where
# only `lo` exists, and everything it starts stays there; the namespace and its firewall rules go
# away with the last of its processes.
if [ "$NETNS" = 1 ] && [ -z "${LOAD_IN_NETNS:-}" ]; then
  exec unshare -n -- env LOAD_IN_NETNS=1 LOAD_BUILD=0 bash "$ROOT/benches/load.sh" "$@"
fi
if [ -n "${LOAD_IN_NETNS:-}" ]; then
  ip link set lo up
fi
IMPAIR_ARGS=(--loss "${LOAD_IMPAIR_LOSS:-0.05}" --dup "${LOAD_IMPAIR_DUP:-0.02}" --jitter-ms "${LOAD_IMPAIR_JITTER_MS:-60}")

mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
echo "load: N=${NS[*]} rate=${RATE}/s steady=${STEADY}s capture=${CAPTURE}${LOAD_IN_NETNS:+ netns}$([ "$IMPAIR" != 1 ] || echo " impair: ${IMPAIR_ARGS[*]}") -> $OUT"

# ---- processes: every PID we start is recorded and killed at exit.
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID SIGNAL SECS: signal one of our processes and wait for it (bounded), then forget it.
stop() {
  local pid="$1" sig="$2" secs="$3" i
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

ticks() { [ -r "/proc/$1/stat" ] && awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" || echo ""; }
# User and system ticks apart.
ticks_us() { [ -r "/proc/$1/stat" ] && awk '{sub(/^.*\) /, ""); print $12 " " $13}' "/proc/$1/stat" || echo ""; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Busy jiffies of the whole box (user+nice+system+irq+softirq+steal).
box_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# Jiffies stolen by the hypervisor (this is a VM: run-to-run CPU figures vary with the host's load).
box_steal() { awk '/^cpu / {print $9}' /proc/stat; }
# All jiffies of the whole box (busy + idle + iowait), to turn busy jiffies into a fraction.
box_total() { awk '/^cpu / {print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# rtp_drops LOW HIGH: datagrams the kernel dropped at frontdesk's RTP/RTCP sockets (ports LOW-HIGH)
# for a full receive buffer, summed over the sockets open now (/proc/net/udp "drops").
rtp_drops() {
  awk -v lo="$1" -v hi="$2" 'function hex(s,  i, n) { n = 0; for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789ABCDEF", substr(s, i, 1)) - 1; return n }
    NR > 1 {split($2, a, ":"); p = hex(a[2]); if (p >= lo && p <= hi) d += $NF} END {print d + 0}' /proc/net/udp
}
count() { grep -c -- "$1" "$2" 2>/dev/null || true; }

# ---- the caller's audio: a sentence (no commas, so one VAD turn), then 5 s of silence in which the
# simulator's echo of it (~3.3 s: 300 ms prefix padding + speech + 500 ms silence window) plays back.
AUDIO_DIR="$OUT/audio"
mkdir -p "$AUDIO_DIR"
espeak-ng -v en-us -s 150 -w "$AUDIO_DIR/sentence.wav" "Please book me a cleaning next Tuesday"
sox "$AUDIO_DIR/sentence.wav" -r 8000 -c 1 -t ul "$AUDIO_DIR/load.ul" pad 0 5

DIALPLANS="$OUT/dialplans"
mkdir -p "$DIALPLANS"
cat > "$DIALPLANS/load.toml" <<'EOF'
# benches/load.sh: every call reaches an agent with no greeting (the simulator only echoes).
[[routes]]
name = "load"
to = "*"
agent = "echo"

[agents.echo]
voice = "alloy"
greeting = ""
instructions = "Load test: the simulator echoes the caller."
max_duration = "10m"
tools = []
EOF

# Admit the load from 127.0.0.1 without the per-source rate limit, and more than the default 100
# calls at once.
CONFIG="$OUT/frontdesk.toml"
cat > "$CONFIG" <<'EOF'
[admission]
max_calls = 5000

[[admission.trunks]]
name = "load"
allow = ["127.0.0.1/32"]
rate_per_source = 0
EOF

# run_one N [BUILD]: one run with N calls of frontdesk $FD (BUILD: A or B of an A/B run).
run_one() {
  local n="$1" build="${2:-}"
  local dir="$OUT/$n${build:+-$build}"
  mkdir -p "$dir"
  ln -sf "$AUDIO_DIR/load.ul" "$dir/load.ul"
  local ramp=$(( (n + RATE - 1) / RATE ))
  local hold=$(( ramp + 6 + STEADY + 4 ))
  local ports
  ports="$("${ANALYZE[@]}" ports 4 $(( 2 * n + 64 )))"
  read -r sip_port sim_port sipp_port sipp_mp rtp_low <<<"$ports"
  local rtp_high=$(( rtp_low + 2 * n + 62 ))
  echo "== N=$n${build:+ build $build ($FD)}: hold ${hold}s, ramp ${ramp}s, SIP 127.0.0.1:$sip_port, sim :$sim_port, SIPp :$sipp_port media :$sipp_mp, RTP $rtp_low-$rtp_high"

  "$SIM" sim --listen "127.0.0.1:$sim_port" --echo >"$dir/sim.log" 2>&1 &
  local sim_pid=$!
  PIDS+=("$sim_pid")
  "${ANALYZE[@]}" wait-tcp "127.0.0.1:$sim_port" 15

  # frontdesk::bridge=debug: also log failed RTP/RTCP sends (a few lines per call otherwise).
  NO_COLOR=1 RUST_LOG="info,rsipstack=warn,frontdesk::bridge=debug" "$FD" serve --config "$CONFIG" \
    --sip-listen "127.0.0.1:$sip_port" --media-ip 127.0.0.1 --rtp-ports "$rtp_low-$rtp_high" \
    --db "$dir/frontdesk.db" --dialplans "$DIALPLANS" \
    --realtime-url "ws://127.0.0.1:$sim_port/v1/realtime" >"$dir/frontdesk.log" 2>&1 &
  local fd_pid=$!
  PIDS+=("$fd_pid")
  "${ANALYZE[@]}" wait-sip "127.0.0.1:$sip_port" 30
  sleep 1
  local rss_idle
  rss_idle="$(rss_kib "$fd_pid")"

  local dump_pid="" imp_pid="" i rule=()
  if [ "$IMPAIR" = 1 ]; then
    # The caller's RTP (from SIPp's media port to frontdesk's RTP ports; the copies impair.py sends
    # carry mark 1 and pass) goes through impair.py; same seed for the same N, so an A/B pair
    # gets the same draws.
    python3 "$ROOT/benches/impair.py" --queue 0 --sport "$sipp_mp" --dports "$rtp_low-$rtp_high" \
      "${IMPAIR_ARGS[@]}" --seed "$n" --stats "$dir/impair.json" >"$dir/impair.log" 2>&1 &
    imp_pid=$!
    PIDS+=("$imp_pid")
    for ((i = 0; i < 100; i++)); do grep -q " bound" "$dir/impair.log" && break; sleep 0.1; done
    grep -q " bound" "$dir/impair.log" || { echo "impair.py did not start: $(cat "$dir/impair.log")" >&2; exit 1; }
    rule=(OUTPUT -p udp -s 127.0.0.1 --sport "$sipp_mp" -d 127.0.0.1 --dport "$rtp_low:$rtp_high"
      -m mark ! --mark 1 -j NFQUEUE --queue-num 0)
    iptables -A "${rule[@]}"
  fi
  if [ "$CAPTURE" = 1 ]; then
    # Headers only (64 bytes: Ethernet + IPv4 + UDP + RTP header), classic pcap for the analyzer.
    dumpcap -P -s 64 -B 64 -i lo -f "udp port $sipp_mp" -w "$dir/rtp.pcap" >"$dir/dumpcap.log" 2>&1 &
    dump_pid=$!
    PIDS+=("$dump_pid")
    for ((i = 0; i < 150; i++)); do grep -q "Capturing on" "$dir/dumpcap.log" && break; sleep 0.1; done
    grep -q "Capturing on" "$dir/dumpcap.log" || { echo "dumpcap did not start: $(cat "$dir/dumpcap.log")" >&2; exit 1; }
    sleep 0.3
  fi

  (cd "$dir" && exec timeout $(( hold + ramp + 90 )) sipp -sf "$ROOT/tests/sipp/uac_load.xml" \
    "127.0.0.1:$sip_port" -s frontdesk -i 127.0.0.1 -p "$sipp_port" -mi 127.0.0.1 -mp "$sipp_mp" \
    -l "$n" -m "$n" -r "$RATE" -d "$(( hold * 1000 ))" -nostdin \
    -timeout "$(( hold + ramp + 60 ))s" -timeout_error \
    -trace_err -error_file "$dir/sipp.errors.log" >"$dir/sipp.out" 2>&1) &
  local sipp_pid=$!
  PIDS+=("$sipp_pid")
  # $sipp_pid is `timeout`; SIPp itself is its child.
  local sipp_real=""
  for ((i = 0; i < 50; i++)); do
    sipp_real="$(pgrep -P "$sipp_pid" -x sipp | head -1 || true)"
    [ -n "$sipp_real" ] && break
    sleep 0.1
  done
  [ -z "$sipp_real" ] || PIDS+=("$sipp_real")

  # Wait until all N calls are answered (bounded), then let them settle into their echo cycle.
  local deadline=$(( SECONDS + ramp + 30 ))
  while [ "$(count ': call answered' "$dir/frontdesk.log")" -lt "$n" ] && [ $SECONDS -lt $deadline ]; do
    kill -0 "$sipp_pid" 2>/dev/null || break
    sleep 0.2
  done
  sleep 5

  local m="$dir/metrics.txt"
  {
    echo "clk_tck=$HZ"
    echo "cores=$CORES"
    echo "rss_idle=$rss_idle"
    echo "active0=$(( $(count ': call answered' "$dir/frontdesk.log") - $(count ': call ended' "$dir/frontdesk.log") ))"
    echo "t0=$(date +%s.%N)"
    echo "fd_ticks0=$(ticks "$fd_pid")"
    echo "fd_user_sys0=$(ticks_us "$fd_pid")"
    echo "sim_ticks0=$(ticks "$sim_pid")"
    echo "sipp_ticks0=${sipp_real:+$(ticks "$sipp_real")}"
    echo "dump_ticks0=${dump_pid:+$(ticks "$dump_pid")}"
    echo "imp_ticks0=${imp_pid:+$(ticks "$imp_pid")}"
    echo "stat_busy0=$(box_busy)"
    echo "stat_total0=$(box_total)"
    echo "stat_steal0=$(box_steal)"
    echo "rtp_drops0=$(rtp_drops "$rtp_low" "$rtp_high")"
  } >"$m"
  if [ "$PERF" = 1 ]; then
    # cpu-clock: hardware counters are not available in this VM. The release build has no frame
    # pointers, so no -g by default; LOAD_PERF_ARGS="--call-graph dwarf" with a build carrying
    # debug info (CARGO_PROFILE_RELEASE_DEBUG=1) gives call graphs.
    # shellcheck disable=SC2086
    perf record -F 999 -e cpu-clock ${LOAD_PERF_ARGS:-} -p "$fd_pid" -o "$dir/perf.data" -- sleep "$STEADY" >"$dir/perf.log" 2>&1 || true
  elif [ "$SYSCALLS" = 1 ]; then
    # Tracepoint counts (no hardware counters in this VM); CSV: count,,event,...
    perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto \
      -e syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait \
      -e syscalls:sys_enter_futex,context-switches -p "$fd_pid" -o "$dir/syscalls.csv" -- sleep "$STEADY" \
      >/dev/null 2>&1 || true
  else
    sleep "$STEADY"
  fi
  {
    echo "t1=$(date +%s.%N)"
    echo "fd_ticks1=$(ticks "$fd_pid")"
    echo "fd_user_sys1=$(ticks_us "$fd_pid")"
    echo "sim_ticks1=$(ticks "$sim_pid")"
    echo "sipp_ticks1=${sipp_real:+$(ticks "$sipp_real")}"
    echo "dump_ticks1=${dump_pid:+$(ticks "$dump_pid")}"
    echo "imp_ticks1=${imp_pid:+$(ticks "$imp_pid")}"
    echo "stat_busy1=$(box_busy)"
    echo "stat_total1=$(box_total)"
    echo "stat_steal1=$(box_steal)"
    echo "rtp_drops1=$(rtp_drops "$rtp_low" "$rtp_high")"
    echo "rss1=$(rss_kib "$fd_pid")"
    echo "active1=$(( $(count ': call answered' "$dir/frontdesk.log") - $(count ': call ended' "$dir/frontdesk.log") ))"
    echo "build=$build"
    echo "binary=$FD"
    [ ! -s "$dir/syscalls.csv" ] || awk -F, '$1 ~ /^[0-9]+$/ {sub(/^.*:/, "", $3); print "sc_" $3 "=" $1}' "$dir/syscalls.csv"
  } >>"$m"

  # SIPp hangs up after the hold time; wait for it (bounded by its own timeout).
  local rc=0
  wait "$sipp_pid" || rc=$?
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$sipp_pid" ] || [ "$p" = "$sipp_real" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
  echo "sipp_rc=$rc" >>"$m"
  # Let frontdesk write the last call records.
  deadline=$(( SECONDS + 20 ))
  while [ "$(count ': call ended' "$dir/frontdesk.log")" -lt "$(count ': call answered' "$dir/frontdesk.log")" ] && [ $SECONDS -lt $deadline ]; do
    sleep 0.2
  done
  if [ -n "$imp_pid" ]; then
    # Packets the rule queued (impair.py's "seen" must match: nothing else was impaired).
    echo "impair_rule_packets=$(iptables -L OUTPUT -n -v -x | awk '/NFQUEUE/ {print $1; exit}')" >>"$m"
    iptables -D "${rule[@]}"
    stop "$imp_pid" TERM 10
  fi
  if [ -n "$dump_pid" ]; then
    # Let the kernel retire the capture's last ring block (dumpcap drops a block that is still
    # open when it stops: the last ~0.25 s of packets, uncounted).
    sleep 2
    stop "$dump_pid" INT 10
    echo "dump_stats=$(grep -E '^Packets (captured|received)' "$dir/dumpcap.log" | tr '\n' ' ')" >>"$m"
  fi
  stop "$fd_pid" TERM 10
  stop "$sim_pid" TERM 5

  "${ANALYZE[@]}" analyze --n "$n" --rate "$RATE" --hold "$hold" --metrics "$m" \
    --log "$dir/frontdesk.log" --sipp-out "$dir/sipp.out" --sipp-mp "$sipp_mp" \
    ${dump_pid:+--pcap "$dir/rtp.pcap"} ${imp_pid:+--impair-stats "$dir/impair.json"} --out "$RESULTS" >/dev/null
  # The capture is large and not needed once analysed.
  [ "${LOAD_KEEP_PCAP:-0}" = 1 ] || rm -f "$dir/rtp.pcap"
  # (LOAD_KEEP_PCAP=1 keeps it, e.g. for tshark -z rtp,streams)
  "${ANALYZE[@]}" table --row-only <(tail -1 "$RESULTS")
}

for n in "${NS[@]}"; do
  if [ -n "$BASELINE" ]; then
    B="$FD"
    FD="$BASELINE" run_one "$n" A
    FD="$B" run_one "$n" B
  else
    run_one "$n"
  fi
done

echo
echo "Results ($RESULTS), machine: $CORES cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); SIPp, the simulator and dumpcap run on the same box:"
"${ANALYZE[@]}" table "$RESULTS"
