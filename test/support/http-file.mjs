// A tiny HTTP server for end-to-end tests (run inside a test namespace): serves the file given as
// the first argument at every path, on the port given second, on both families.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';

const [file, port] = process.argv.slice(2);
const size = statSync(file).size;
createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
  createReadStream(file).pipe(res);
}).listen({ port: Number(port), host: '::', ipv6Only: false });
