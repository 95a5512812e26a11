#!/usr/bin/env python3
"""An independent SMPP client (smpplib, PyPI) against smsmta's SMPP server.

Usage: smpplib_client.py HOST PORT SYSTEM_ID PASSWORD SOURCE DEST

Binds as a transceiver, submits four texts (GSM 03.38, the GSM '@' and '{' that take an
escape, UCS-2, and one of 200 characters that smpplib splits into UDH parts), answers
enquire_link, unbinds. Prints one line per submit_sm_resp: `resp SEQ STATUS MESSAGE_ID`
(one per part), then `unbound`. Exits non-zero on any error.
"""
import sys

import smpplib.client
import smpplib.consts
import smpplib.gsm

host, port, system_id, password, source, dest = sys.argv[1:7]
LONG = "This text is longer than one SMS can carry, so smpplib sends it in parts. " * 3
texts = ["Hello from smpplib", "at @ and {braces}", "Привет 🙂", LONG.strip()]
resps = []

client = smpplib.client.Client(host, int(port), timeout=10, allow_unknown_opt_params=True)
client.set_message_sent_handler(lambda pdu: resps.append(pdu))
client.connect()
client.bind_transceiver(system_id=system_id, password=password)
sent = 0
for text in texts:
    parts, coding, esm_class = smpplib.gsm.make_parts(text)
    assert len(parts) == 1 or text == LONG.strip(), "only the long text has parts"
    for part in parts:
        sent += 1
        client.send_message(
          source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
          source_addr_npi=smpplib.consts.SMPP_NPI_UNK,
          source_addr=source,
          dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
          dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
          destination_addr=dest,
          short_message=part,
          data_coding=coding,
          esm_class=esm_class,
          registered_delivery=False,
        )
while len(resps) < sent:
    client.read_once()
for r in resps:
    mid = r.message_id.decode() if isinstance(r.message_id, bytes) else r.message_id
    print("resp", r.sequence, r.status, mid, flush=True)
client.unbind()
client.disconnect()
print("unbound", flush=True)
