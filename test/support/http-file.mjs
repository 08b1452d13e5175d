// A tiny HTTP server for end-to-end tests (run inside a test namespace): serves the file given as
// the first argument at every path, on the port given second, on both families; with a third
// argument, at most that many bytes a second (so a download lasts long enough to interrupt).
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';

const [file, port, rate] = process.argv.slice(2);
const size = statSync(file).size;
const bytesPerSecond = rate === undefined ? Infinity : Number(rate);

async function* throttled(source) {
  const start = performance.now();
  let sent = 0;
  for await (const chunk of source) {
    sent += chunk.length;
    const due = start + (sent / bytesPerSecond) * 1000;
    if (due > performance.now()) await sleep(due - performance.now());
    yield chunk;
  }
}

createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  const body = createReadStream(file, { highWaterMark: 64 * 1024 });
  if (bytesPerSecond === Infinity) body.pipe(res);
  else pipeline(body, throttled, res).catch(() => res.destroy());
}).listen({ port: Number(port), host: '::', ipv6Only: false });
