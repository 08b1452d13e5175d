// The control socket's protocol over a real unix socket: one reply per request line, in order;
// bad JSON, a request that is no object or has no command, an unknown command and a handler that
// throws each get an error reply and leave the connection (and the server) serving; an over-long
// line gets an error and the connection closes; clients beyond MAX_CLIENTS are refused; clients
// at once each get their own answers; a live socket is not taken over, a stale one is.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { native } from 'vhost-user-ts/testing';
import { CONTROL_COMMANDS, ControlError, ControlInUseError, ControlServer, MAX_CLIENTS, MAX_LINE, controlHandler } from '../../src/main/control.js';
import type { ControlTarget } from '../../src/main/control.js';
import { UsageError } from '../../src/main/options.js';
import { until } from '../support/wait.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-control-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A client that collects reply lines. */
async function client(path: string): Promise<{ socket: Socket; lines: string[]; closed: () => boolean; send: (s: string) => void }> {
  const socket = createConnection(path);
  const lines: string[] = [];
  let buf = '';
  let closed = false;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  socket.on('close', () => (closed = true));
  socket.on('error', () => {});
  await new Promise<void>((r) => socket.once('connect', () => r()));
  return { socket, lines, closed: () => closed, send: (s) => void socket.write(s) };
}

const parse = (line: string | undefined): Record<string, unknown> => JSON.parse(line ?? 'null') as Record<string, unknown>;

t.test('--socket-mode reaches the control socket without the bits for others', async (t) => {
  const dir = tempDir(t);
  for (const [mode, want] of [
    [0o660, 0o660],
    [0o666, 0o660],
    [0o604, 0o600],
  ] as const) {
    const path = join(dir, `m${mode.toString(8)}.ctl`);
    const server = await ControlServer.listen(path, () => ({}), { mode });
    t.equal(statSync(path).mode & 0o777, want, `--socket-mode 0${mode.toString(8)}: 0${want.toString(8)}`);
    server.close();
  }
});

t.test('requests and errors, one reply each, in order', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.ctl');
  const server = await ControlServer.listen(path, (req) => {
    if (req.cmd === 'echo') return { got: req.value ?? null };
    if (req.cmd === 'boom') throw new TypeError('a bug in a handler');
    throw new ControlError(`unknown command ${req.cmd}`);
  });
  t.teardown(() => server.close());
  t.equal(statSync(path).mode & 0o777, 0o600, 'made 0600');
  const c = await client(path);
  c.send('{"id":1,"cmd":"echo","value":42}\n');
  c.send('not json\n');
  c.send('[1,2]\n{"id":"x"}\n');
  c.send('{"id":2,"cmd":"nope"}\n');
  c.send('{"id":3,"cmd":"boom"}\n');
  // A request split across writes, and two in one write.
  c.send('{"id":4,"cmd":"ec');
  c.send('ho"}\n\n{"id":5,"cmd":"echo","value":"a"}\n');
  await until(() => c.lines.length === 8, 'eight replies');
  const r = c.lines.map(parse);
  t.same(r[0], { id: 1, ok: true, result: { got: 42 } });
  t.match(r[1], { ok: false, error: /^not JSON/ });
  t.match(r[2], { ok: false, error: /a JSON object/ });
  t.match(r[3], { id: 'x', ok: false, error: /no "cmd"/ });
  t.same(r[4], { id: 2, ok: false, error: 'unknown command nope' });
  t.same(r[5], { id: 3, ok: false, error: 'a bug in a handler' }, 'a handler that throws: an error reply, the server goes on');
  t.same(r[6], { id: 4, ok: true, result: { got: null } });
  t.same(r[7], { id: 5, ok: true, result: { got: 'a' } });
  t.notOk(c.closed(), 'still connected after the errors');
  t.equal(server.stats.errors, 5);
  c.socket.destroy();
});

t.test('an over-long line: an error, then the connection closes; the server goes on', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.ctl');
  const server = await ControlServer.listen(path, () => 'fine');
  t.teardown(() => server.close());
  const c = await client(path);
  c.send('x'.repeat(MAX_LINE + 10)); // no newline: the bound holds before the line ends
  await until(() => c.closed(), 'closed');
  t.match(parse(c.lines[0]), { ok: false, error: new RegExp(`longer than ${MAX_LINE} bytes`) });
  const d = await client(path);
  d.send('{"cmd":"x"}\n');
  await until(() => d.lines.length === 1, 'a reply');
  t.same(parse(d.lines[0]), { ok: true, result: 'fine' });
  d.socket.destroy();
});

t.test('clients at once: each gets its own replies; one beyond MAX_CLIENTS is refused', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.ctl');
  const server = await ControlServer.listen(path, (req) => req.n);
  t.teardown(() => server.close());
  const clients = await Promise.all(Array.from({ length: MAX_CLIENTS }, () => client(path)));
  await until(() => server.clientCount === MAX_CLIENTS, 'all accepted');
  clients.forEach((c, i) => {
    for (let k = 0; k < 20; k++) c.send(`${JSON.stringify({ cmd: 'n', n: i * 100 + k })}\n`);
  });
  await until(() => clients.every((c) => c.lines.length === 20), 'every reply');
  clients.forEach((c, i) =>
    t.same(
      c.lines.map((l) => parse(l).result),
      Array.from({ length: 20 }, (_, k) => i * 100 + k),
      `client ${i}: its own, in order`,
    ),
  );
  const extra = await client(path);
  await until(() => extra.closed(), 'the extra client closed');
  t.match(parse(extra.lines[0]), { ok: false, error: /too many control clients/ });
  clients[0]!.socket.destroy();
  await until(() => server.clientCount === MAX_CLIENTS - 1, 'one left');
  const next = await client(path);
  next.send('{"cmd":"n","n":7}\n');
  await until(() => next.lines.length === 1, 'served once there is room');
  t.same(parse(next.lines[0]), { ok: true, result: 7 });
  for (const c of [...clients, next]) c.socket.destroy();
});

t.test('a live socket is not taken over; a stale one is; close() removes the file', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.ctl');
  const first = await ControlServer.listen(path, () => 1);
  t.ok(
    await ControlServer.listen(path, () => 2).then(
      () => false,
      (err) => err instanceof ControlInUseError,
    ),
    'a live one: in use',
  );
  first.close();
  await until(() => {
    try {
      statSync(path);
      return false;
    } catch {
      return true;
    }
  }, 'the file removed');
  // Any listener there counts as live.
  const stale = createServer();
  await new Promise<void>((r) => stale.listen(path, r));
  const again = ControlServer.listen(path, () => 3);
  await t.rejects(again, { message: /is in use by a running vunet/ }, 'held by another listener: in use');
  await new Promise<void>((r) => stale.close(() => r()));
  // A stale socket (bound, nobody listening: what a killed process leaves) is replaced.
  native.close(native.unixListen(path, 1));
  t.ok(statSync(path).isSocket(), 'a stale socket there');
  const third = await ControlServer.listen(path, () => 3);
  third.close();
  await t.rejects(
    ControlServer.listen(join(dir, 'no', 'such', 'dir.ctl'), () => 4),
    { message: /^listen E[A-Z]+/ },
    'a directory that is not there',
  );
});

/** A target whose every method says which one ran. */
function fakeTarget(): ControlTarget {
  return {
    forwards: () => [],
    addForwards: (proto, spec) => {
      if (spec === 'bad') throw new UsageError('--tcp-forward must be ...');
      return [{ proto, spec, listen: [], hostPort: 1, guestPort: 1 }];
    },
    removeForwards: () => [],
    leases: () => [],
    neighbours: () => [],
    flows: () => [],
    summary: () => ({
      version: '0',
      uptimeSec: 0,
      attached: false,
      linkUp: false,
      guest: { mac: null, ipv4: [], ipv6: [] },
      icmp: 'none',
      forwards: [],
      flows: { tcp: 0, udp: 0, icmp: 0, udpForward: 0, tcpStates: {} },
      drops: [],
    }),
    status: () => ({ counters: true }),
  };
}

t.test('the commands: arguments checked, each reaches its method', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.ctl');
  const server = await ControlServer.listen(path, controlHandler(fakeTarget()));
  t.teardown(() => server.close());
  const ask = (req: object): Record<string, unknown> => parse(server.answer(JSON.stringify(req)));
  for (const cmd of CONTROL_COMMANDS.filter((c) => c !== 'add' && c !== 'remove')) t.equal(ask({ cmd }).ok, true, cmd);
  t.same(ask({ cmd: 'counters' }).result, { counters: true });
  t.equal(ask({ cmd: 'neighbors' }).ok, true, 'the American spelling too');
  t.match(ask({ cmd: 'add', spec: '80' }), { ok: false, error: /needs "proto"/ });
  t.match(ask({ cmd: 'add', proto: 'sctp', spec: '80' }), { ok: false, error: /needs "proto"/ });
  t.match(ask({ cmd: 'remove', proto: 'tcp' }), { ok: false, error: /needs "spec"/ });
  t.match(ask({ cmd: 'add', proto: 'udp', spec: '53' }), { ok: true, result: [{ proto: 'udp', spec: '53' }] });
  t.same(ask({ cmd: 'add', proto: 'tcp', spec: 'bad' }), { ok: false, error: '--tcp-forward must be ...' });
  t.match(ask({ cmd: 'shutdown' }), { ok: false, error: /unknown command "shutdown": one of status, forwards, add/ });
});

t.test('a client that does not read its replies is not read from until it catches up', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.ctl');
  const reply = 'x'.repeat(100_000);
  const server = await ControlServer.listen(path, () => reply);
  t.teardown(() => server.close());
  const c = await client(path);
  c.socket.pause();
  c.send('{"cmd":"big"}\n'.repeat(1000)); // 100 MB of replies, were they all made
  await new Promise((r) => setTimeout(r, 300));
  t.ok(server.stats.requests < 1000 * 0.2, `answered only what fits the bound (${server.stats.requests} of 1000)`);
  c.socket.resume();
  await until(() => c.lines.length === 1000, 'every reply once read', 20_000);
  t.ok(
    c.lines.every((l) => l.length === reply.length + 23),
    'all whole',
  );
  c.socket.destroy();
});
