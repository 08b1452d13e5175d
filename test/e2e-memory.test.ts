// End to end: a guest whose RAM is not shared with vunet gets no network, and vunet says why in one
// error line, within 5 s of the guest's driver starting, with the QEMU options that fix it. QEMU
// 7.2 with a memory backend of share=off passes its memfd but keeps the guest's writes private (the
// rings read as zeros); without a memory backend it passes no memory at all.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { BOOTED_MARKER, startGuest } from '../scripts/qemu.js';
import { defaultConfig } from '../src/iface/config.js';
import { Vunet } from '../src/main/vunet.js';

interface Line {
  at: number;
  level: number;
  msg: string;
  kind?: string;
}

// The guest tries DHCP (so its driver sends), then stays up a while: long enough for a repeated
// line to show.
const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 5 -T 2 2>&1
sleep 4
`;

for (const [backend, kind, size] of [
  ['private', 'not-shared', 'size=256M'],
  ['none', 'no-memory', 'size=<as -m>'],
] as const) {
  t.test(`guest RAM ${backend === 'private' ? 'with share=off' : 'without a memory backend'}: one error line saying what to do`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'vunet-e2e-memory-'));
    const sock = join(dir, 'vunet.sock');
    const lines: Line[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const s of chunk.toString('utf8').split('\n')) {
          if (s !== '') lines.push({ at: Date.now(), ...(JSON.parse(s) as Omit<Line, 'at'>) });
        }
        done();
      },
    });
    const vunet = await Vunet.start({ socketPath: sock, config: defaultConfig(), logger: pino({ level: 'info' }, sink) });
    t.teardown(async () => {
      await vunet.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const guest = await startGuest({ socketPath: sock, memoryBackend: backend, memoryMiB: 256, script, timeoutMs: 180_000, guestTimeoutSec: 150 });
    await guest.waitFor(new RegExp(BOOTED_MARKER), 150_000);
    // The driver is up once /init has loaded virtio_net and printed the marker.
    const booted = Date.now();
    const exit = await guest.exited;
    t.equal(exit.guestStatus, 0, 'guest script ran to its end');
    t.match(guest.output, /udhcpc: no lease/, 'the guest got no network');
    const told = lines.filter((l) => l.msg.includes('guest RAM must be a shared memory backend'));
    t.equal(told.length, 1, 'one line, not repeated');
    const line = told[0];
    if (line === undefined) return;
    t.equal(line.level, 50, 'an error');
    t.equal(line.kind, kind);
    t.match(line.msg, `-object memory-backend-memfd,id=mem,${size},share=on -numa node,memdev=mem`, 'the QEMU options to use');
    t.ok(line.at - booted < 5000, `within 5 s of the driver starting (${line.at - booted} ms after the boot marker)`);
  });
}

t.test('guest RAM shared: a lease, and no such line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-e2e-memory-'));
  const sock = join(dir, 'vunet.sock');
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const vunet = await Vunet.start({ socketPath: sock, config: defaultConfig(), logger: pino({ level: 'info' }, sink) });
  t.teardown(async () => {
    await vunet.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const guest = await startGuest({ socketPath: sock, script, timeoutMs: 180_000, guestTimeoutSec: 150 });
  const exit = await guest.exited;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  t.match(guest.output, /udhcpc: lease of 10\.0\.2\.15 obtained/, 'the guest got its lease');
  t.notOk(
    lines.some((l) => l.includes('shared memory backend')),
    'nothing said about guest memory',
  );
});
