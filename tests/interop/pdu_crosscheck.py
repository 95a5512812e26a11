#!/usr/bin/env python3
"""Cross-check helper: an independent SMS PDU implementation (python-gsmmodem-new's
gsmmodem.pdu) decodes our SMS-DELIVER PDUs and encodes SMS-SUBMIT PDUs for us to decode.

Driven by tests/interop_pdu.rs. Reads one JSON document on stdin, writes one on stdout.

  {"decode": ["<hex pdu with SMSC prefix>", ...]}
      -> {"decoded": [{"type", "number", "text", "utc", "offset_minutes", "concat"}, ...]}
  {"encode": [{"number", "text", "reference", "validity_minutes", "srr"}, ...]}
      -> {"encoded": [["<hex pdu>", ...], ...]}
"""
import json
import sys
from datetime import timedelta

try:
    import gsmmodem.pdu as pdu
except ImportError:
    sys.stderr.write("peer missing: python module gsmmodem (pip install python-gsmmodem-new)\n")
    sys.exit(3)


def fix_surrogates(s):
    # gsmmodem decodes UCS-2 unit by unit; join UTF-16 surrogate pairs into characters.
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def decode(hexpdu):
    r = pdu.decodeSmsPdu(hexpdu)
    concat = None
    for ie in r.get("udh", []) or []:
        if isinstance(ie, pdu.Concatenation):
            concat = {"reference": ie.reference, "total": ie.parts, "seq": ie.number}
    t = r.get("time")
    return {
        "type": r["type"],
        "number": r.get("number"),
        "text": fix_surrogates(r.get("text", "")),
        "utc": int(t.timestamp()) if t is not None else None,
        "offset_minutes": int(t.utcoffset().total_seconds() // 60) if t is not None else None,
        "concat": concat,
    }


def as_units(s):
    # gsmmodem encodes UCS-2 one Python character at a time; hand it UTF-16 code units so that
    # characters beyond the BMP (emoji) go out as surrogate pairs, as handsets send them.
    b = s.encode("utf-16-be", "surrogatepass")
    return "".join(chr((b[i] << 8) | b[i + 1]) for i in range(0, len(b), 2))


def encode(case):
    validity = None
    if case.get("validity_minutes") is not None:
        validity = timedelta(minutes=case["validity_minutes"])
    pdus = pdu.encodeSmsSubmitPdu(
        case["number"],
        as_units(case["text"]),
        reference=case.get("reference", 0),
        validity=validity,
        requestStatusReport=case.get("srr", False),
    )
    return [str(p) for p in pdus]


def main():
    req = json.load(sys.stdin)
    out = {}
    if "decode" in req:
        out["decoded"] = [decode(p) for p in req["decode"]]
    if "encode" in req:
        out["encoded"] = [encode(c) for c in req["encode"]]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
