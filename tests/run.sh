#!/usr/bin/env bash
# Runs frontdesk's whole test suite: unit tests, SIP signalling tests and end-to-end calls with
# SIPp, the Realtime simulator, espeak-ng speech and packet captures, registration and calls
# through Kamailio (registrar and dispatcher), plus protocol conformance
# checks against the official `openai` Python SDK.
#
# On Debian it installs what is missing (as root, or through sudo). The packet captures need root
# or dumpcap capture rights (`sudo dpkg-reconfigure wireshark-common` + group `wireshark`).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(sip-tester espeak-ng sox libsox-fmt-all tshark python3-venv kamailio kamailio-sqlite-modules kamailio-tls-modules sqlite3 sipvicious postgresql iproute2 util-linux chromium baresip-core openssl)
TOOLS=(sipp espeak-ng sox tshark dumpcap kamailio kamcmd sqlite3 svwar svmap ip unshare chromium baresip openssl)
# PostgreSQL server binaries (not on PATH on Debian); the store tests start a throwaway server.
PG_INITDB=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n1 || true)

missing=()
for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
[ -n "$PG_INITDB" ] || missing+=(initdb)
# Kamailio's TLS module (kamailio-tls-modules) is a library, not a tool on PATH.
ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 || missing+=(kamailio-tls-modules)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: missing tools: ${missing[*]}; installing Debian packages: ${DEBIAN_PACKAGES[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${DEBIAN_PACKAGES[@]}" >/dev/null
  # Debian enables Kamailio's own service (port 5060) on install; the tests start their own.
  if printf '%s\n' "${missing[@]}" | grep -qx kamailio; then
    $SUDO systemctl disable --now kamailio >/dev/null 2>&1 || true
  fi
fi

# Python with the openai SDK, for validating Realtime and GPT-Live events against the SDK's
# models (`openai.types.live` needs openai >= 3.51).
VENV="${FRONTDESK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/frontdesk/venv}"
if ! "$VENV/bin/python" -c "import openai.types.live, openai.types.realtime" >/dev/null 2>&1; then
  echo "tests/run.sh: installing the openai package (>= 3.51) into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -U 'openai>=3.51'
fi
export FRONTDESK_TEST_PYTHON="$VENV/bin/python"

# Packet capture rights (dumpcap on the loopback interface).
if ! dumpcap -D >/dev/null 2>&1 || ! timeout 3 dumpcap -i lo -c 1 -a duration:1 -w /dev/null -q >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: dumpcap cannot capture on 'lo'; run as root or grant capture rights" >&2
    exit 1
  fi
fi

# The PostgreSQL halves of the store tests and the multi-instance tests must run, not skip.
export FRONTDESK_REQUIRE_PG=1

cargo test --locked --all-targets
