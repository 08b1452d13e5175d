// A tiny DNS responder for end-to-end tests (run inside a test namespace): answers every A query
// with 192.0.2.123 and every AAAA query with 2001:db8::123, on UDP port 53 of both families.
import { createSocket } from 'node:dgram';

function answer(q) {
  if (q.length < 12) return null;
  let o = 12;
  while (o < q.length && q[o] !== 0) o += q[o] + 1;
  const qEnd = o + 5;
  if (qEnd > q.length) return null;
  const qtype = q.readUInt16BE(o + 1);
  const rdata = qtype === 28 ? Buffer.from('20010db8000000000000000000000123', 'hex') : qtype === 1 ? Buffer.from([192, 0, 2, 123]) : null;
  const head = Buffer.from(q.subarray(0, qEnd));
  head.writeUInt16BE(0x8180, 2); // response, recursion desired + available
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(rdata ? 1 : 0, 6);
  head.writeUInt32BE(0, 8);
  if (!rdata) return head;
  const rr = Buffer.alloc(12);
  rr.writeUInt16BE(0xc00c, 0); // the question's name
  rr.writeUInt16BE(qtype, 2);
  rr.writeUInt16BE(1, 4);
  rr.writeUInt32BE(60, 6);
  rr.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([head, rr, rdata]);
}

for (const type of ['udp4', 'udp6']) {
  const s = createSocket({ type, ipv6Only: type === 'udp6' });
  s.on('message', (msg, rinfo) => {
    const a = answer(msg);
    if (a) s.send(a, rinfo.port, rinfo.address);
  });
  s.bind(53);
}
