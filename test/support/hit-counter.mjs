// A TCP and UDP echo service that reports every connection and datagram on stdout, one line each
// ("tcp ADDR" / "udp ADDR"): what a fence test listens with to prove nothing got through.
// Usage: node hit-counter.mjs PORT (TCP on PORT, both families; UDP on PORT+1, both families).
import dgram from 'node:dgram';
import net from 'node:net';

const port = Number(process.argv[2]);
const say = (line) => process.stdout.write(`${line}\n`);
net
  .createServer((s) => {
    say(`tcp ${s.remoteAddress}`);
    s.on('error', () => undefined);
    s.pipe(s);
  })
  .listen({ port, host: '::', ipv6Only: false });
for (const [type, host] of [
  ['udp4', '0.0.0.0'],
  ['udp6', '::'],
]) {
  const u = dgram.createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
  u.on('message', (m, r) => {
    say(`udp ${r.address}`);
    u.send(m, r.port, r.address);
  });
  u.bind(port + 1, host);
}
say('ready');
