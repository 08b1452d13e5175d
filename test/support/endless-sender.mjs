// A TCP server that writes to every connection as fast as it is read, forever (a host peer for
// the stalled-connection measurements). Usage: node endless-sender.mjs HOST PORT
import { createServer } from 'node:net';

const [host, port] = process.argv.slice(2);
const chunk = Buffer.alloc(64 * 1024, 0x5a);
createServer((s) => {
  s.on('error', () => undefined);
  const more = () => {
    while (s.write(chunk));
  };
  s.on('drain', more);
  more();
}).listen({ host, port: Number(port), backlog: 4096 }, () => process.stdout.write('ready\n'));
