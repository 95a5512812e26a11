#!/usr/bin/env bash
# Runs every test: installs the third-party peers the interop tests need when they are
# missing, then `cargo test` (everything that needs no peer), then the interop suite
# (`cargo test -- --ignored`: each interop test fails, naming its peer, when the peer is
# missing), then a bounded fuzz run of every decoder.
#
# Usage: bash tests/run-all.sh            (from the repository root or anywhere)
# Env:   FUZZ_SECONDS=N   seconds per fuzz target (default 8; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_install() {
  # apt_install PACKAGE COMMAND: install PACKAGE from Debian when COMMAND is missing.
  local pkg=$1 cmd=$2
  if ! command -v "$cmd" >/dev/null 2>&1; then
    log "installing $pkg (for $cmd)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null \
      || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null; }
  fi
}

# --- third-party peers -------------------------------------------------------------------
apt_install sip-tester sipp
apt_install swaks swaks
apt_install curl curl
apt_install openssl openssl
apt_install kannel bearerbox
# systemd-analyze verify checks contrib/smsmta.service (tests/service.rs skips, saying so,
# where it is missing).
apt_install systemd systemd-analyze
# promtool checks the metrics exposition and a Prometheus server scrapes it (tests/metrics.rs).
apt_install prometheus promtool
# Kannel's fake SMSC (drive_smpp), the upstream of smsmta's ESME side; not on PATH.
if [ ! -x /usr/lib/kannel/test/drive_smpp ]; then
  log "installing kannel-extras (for drive_smpp)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q kannel-extras >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q kannel-extras >/dev/null; }
fi
if ! command -v postfix >/dev/null 2>&1; then
  # "No configuration": Debian writes no main.cf and starts nothing; the tests run private
  # instances on loopback (tests/interop/postfix/start-instance.sh).
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  apt_install postfix postfix
fi
# Independent SMS PDU implementation for the codec cross-check (python-gsmmodem-new).
if ! python3 -c 'import gsmmodem.pdu' >/dev/null 2>&1; then
  log "installing python-gsmmodem-new from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check python-gsmmodem-new==0.13.0
fi

# Independent SMPP client for the SMPP server's interop test (smpplib).
if ! python3 -c 'import smpplib' >/dev/null 2>&1; then
  log "installing smpplib from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check smpplib==2.2.4
fi

# The mail sink of the README's five-minute walk (tests/readme.rs).
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  log "installing aiosmtpd from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check aiosmtpd==1.4.6
fi

# An SMSC made with node-smpp (npm), the upstream with receipts (tests/interop_node_smpp.rs).
apt_install nodejs node
apt_install npm npm
if [ ! -d tests/interop/node-smpp/node_modules/smpp ]; then
  log "installing node-smpp from npm"
  (cd tests/interop/node-smpp && npm ci --silent --no-audit --no-fund)
fi

# --- unit, property and integration tests (no peers) ---------------------------------------
log "cargo test"
cargo test

# --- interop tests (real third-party peers) ------------------------------------------------
log "interop tests (cargo test -- --ignored)"
cargo test --test interop_pdu -- --ignored
cargo test --test interop_sipp -- --ignored
cargo test --test interop_smtp -- --ignored
cargo test --test interop_smpp -- --ignored
cargo test --test interop_kannel -- --ignored
cargo test --test interop_drive_smpp -- --ignored
cargo test --test interop_node_smpp -- --ignored
cargo test --test metrics -- --ignored
cargo test --test readme -- --ignored

# --- bounded fuzzing ---------------------------------------------------------------------
FUZZ_SECONDS=${FUZZ_SECONDS:-8}
if [ "$FUZZ_SECONDS" != "0" ] && [ -d fuzz ]; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null
  fi
  # cargo-fuzz passes nightly-only flags; RUSTC_BOOTSTRAP lets the stable 1.95 toolchain take them.
  for target in $(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
    log "fuzz $target for ${FUZZ_SECONDS}s"
    # The kept seeds (fuzz/seeds/<target>) start the corpus; what a run adds stays local.
    bash fuzz/seed-corpus.sh "$target"
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 >/dev/null 2>fuzz-$target.log) \
      || { tail -40 "fuzz/fuzz-$target.log"; echo "fuzz target $target found a crash"; exit 1; }
    rm -f "fuzz/fuzz-$target.log"
  done
fi

log "all tests passed"
