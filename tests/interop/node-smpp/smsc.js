// An upstream SMSC for smsmta's ESME side, made with node-smpp (npm "smpp", an SMPP 3.4
// implementation independent of smsmta's): tests/interop_node_smpp.rs starts it.
//
// Usage: node smsc.js PORT SYSTEM_ID PASSWORD FROM TO TEXT
// It takes one transceiver bind with those credentials (anything else: ESME_RBINDFAIL), then
// sends one text FROM -> TO as deliver_sm; it answers every submit_sm with a message_id
// ("N-1", "N-2", ...) and, when registered_delivery asks, sends the delivery receipt
// (esm_class 0x04, the Appendix B text, receipted_message_id and message_state TLVs) half a
// second later. Every event is one JSON line on stdout; it binds to 127.0.0.1 only.
'use strict';
const smpp = require('smpp');

const [port, systemId, password, from, to, text] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let submitted = 0;

const server = smpp.createServer((session) => {
  session.on('error', (e) => say({ event: 'error', error: String(e) }));
  session.on('bind_transceiver', (pdu) => {
    const ok = pdu.system_id === systemId && pdu.password === password;
    say({ event: 'bind_transceiver', system_id: pdu.system_id, ok });
    if (!ok) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'NODESMSC' }));
    session.deliver_sm(
      { source_addr_ton: 1, source_addr_npi: 1, source_addr: from, dest_addr_ton: 1,
        dest_addr_npi: 1, destination_addr: to, short_message: text },
      (resp) => say({ event: 'deliver_sm_resp', command_status: resp.command_status }),
    );
  });
  session.on('submit_sm', (pdu) => {
    submitted += 1;
    const id = 'N-' + submitted;
    const body = pdu.short_message && pdu.short_message.message !== undefined
      ? pdu.short_message.message : String(pdu.short_message);
    say({ event: 'submit_sm', id, source: pdu.source_addr, dest: pdu.destination_addr,
      text: body, registered_delivery: pdu.registered_delivery });
    session.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 1) {
      setTimeout(() => {
        const receipt = 'id:' + id + ' sub:001 dlvrd:001 submit date:2612061000 ' +
          'done date:2612061000 stat:DELIVRD err:000 text:' + String(body).slice(0, 20);
        session.deliver_sm(
          { source_addr_ton: 1, source_addr_npi: 1, source_addr: pdu.destination_addr,
            dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: pdu.source_addr,
            esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT, short_message: receipt,
            receipted_message_id: id, message_state: smpp.MESSAGE_STATE.DELIVERED },
          (resp) => say({ event: 'receipt_resp', id, command_status: resp.command_status }),
        );
      }, 500);
    }
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { session.send(pdu.response()); session.close(); });
});
server.listen(Number(port), '127.0.0.1', () => say({ event: 'listening', port: Number(port) }));
