#!/usr/bin/env bash
# Starts fuzz/corpus/<target> from the kept seeds: fuzz/seeds/<target>, and for the SIP targets
# the RFC 4475 torture messages of tests/fixtures/rfc4475 (sip_door's inputs start with a flags
# octet: 0 = trusted source over UDP). Files already in the corpus are kept.
# Usage (from the repository root): bash fuzz/seed-corpus.sh <target>
set -euo pipefail
target=$1
mkdir -p "fuzz/corpus/$target"
if [ -d "fuzz/seeds/$target" ]; then cp -n "fuzz/seeds/$target"/* "fuzz/corpus/$target/" 2>/dev/null || true; fi
for f in tests/fixtures/rfc4475/*.sip; do
  name=rfc4475-$(basename "$f" .sip)
  case $target in
    sip_message) [ -e "fuzz/corpus/$target/$name" ] || cp "$f" "fuzz/corpus/$target/$name" ;;
    sip_door) [ -e "fuzz/corpus/$target/$name" ] || { printf '\0'; cat "$f"; } > "fuzz/corpus/$target/$name" ;;
  esac
done
