import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { LINKTYPE_ETHERNET, PCAP_GLOBAL_HEADER_LEN, PCAP_RECORD_HEADER_LEN, PCAP_SNAPLEN, PcapError, PcapWriter } from '../../src/main/pcap.js';
import { pseudoHeaderSumV4 } from '../../src/wire/checksum.js';
import { tcpFrame } from '../support/packets.js';
import { until } from '../support/wait.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'vunet-pcap-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const tmp = (): string => join(dir, `cap-${n++}.pcap`);

interface Rec {
  tsSec: number;
  tsUsec: number;
  inclLen: number;
  origLen: number;
  data: Buffer;
}

/** Parses a little-endian classic pcap file (fails on anything unexpected). */
function readPcap(path: string): { header: Buffer; records: Rec[] } {
  const b = readFileSync(path);
  const header = b.subarray(0, PCAP_GLOBAL_HEADER_LEN);
  const records: Rec[] = [];
  let at = PCAP_GLOBAL_HEADER_LEN;
  while (at < b.length) {
    if (at + PCAP_RECORD_HEADER_LEN > b.length) throw new Error(`truncated record header at ${at}`);
    const inclLen = b.readUInt32LE(at + 8);
    const rec: Rec = {
      tsSec: b.readUInt32LE(at),
      tsUsec: b.readUInt32LE(at + 4),
      inclLen,
      origLen: b.readUInt32LE(at + 12),
      data: b.subarray(at + 16, at + 16 + inclLen),
    };
    if (rec.data.length !== inclLen) throw new Error(`truncated record data at ${at}`);
    records.push(rec);
    at += 16 + inclLen;
  }
  return { header, records };
}

/** An Ethernet frame of `len` bytes: broadcast dst, our MAC src, IPv4 ethertype, pattern `seed`. */
function frame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed) & 0xff;
  f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x55, 0x0a, 0x00, 0x02, 0x02, 0x08, 0x00].slice(0, len));
  return f;
}

t.test('global header and records round-trip', async (t) => {
  const path = tmp();
  const w = await PcapWriter.open(path);
  const frames = [frame(60, 1), frame(98, 2), frame(1514, 3), frame(65534, 4), frame(14, 5)];
  const times = [1_700_000_000_000, 1_700_000_000_001.5, 1_700_000_001_999.9996, 0, 1_700_000_002_000.123];
  frames.forEach((f, i) => t.ok(w.record(f, times[i] ?? 0)));
  await w.close();

  const { header, records } = readPcap(path);
  t.equal(header.readUInt32LE(0), 0xa1b2c3d4, 'magic (microsecond timestamps)');
  t.strictSame([...header.subarray(0, 4)], [0xd4, 0xc3, 0xb2, 0xa1], 'little-endian');
  t.equal(header.readUInt16LE(4), 2, 'version major');
  t.equal(header.readUInt16LE(6), 4, 'version minor');
  t.equal(header.readInt32LE(8), 0, 'thiszone');
  t.equal(header.readUInt32LE(12), 0, 'sigfigs');
  t.equal(header.readUInt32LE(16), 262144, 'snaplen');
  t.equal(PCAP_SNAPLEN, 262144);
  t.equal(header.readUInt32LE(20), LINKTYPE_ETHERNET, 'linktype Ethernet');
  t.equal(LINKTYPE_ETHERNET, 1);

  t.equal(records.length, frames.length);
  const wantTs: Array<[number, number]> = [
    [1_700_000_000, 0],
    [1_700_000_000, 1500],
    [1_700_000_002, 0], // 1999.9996 ms rounds up to the next second
    [0, 0],
    [1_700_000_002, 123],
  ];
  records.forEach((r, i) => {
    const f = frames[i] ?? new Uint8Array();
    t.strictSame([r.tsSec, r.tsUsec], wantTs[i], `record ${i} ts_sec/ts_usec`);
    t.equal(r.inclLen, f.length, `record ${i} incl_len`);
    t.equal(r.origLen, f.length, `record ${i} orig_len`);
    t.ok(r.data.equals(f), `record ${i} bytes`);
  });
  t.strictSame(w.stats, { records: 5, bytes: 60 + 98 + 1514 + 65534 + 14, dropped: 0 });
});

const tshark = await run('which', ['tshark']).then(
  (r) => r.stdout.trim(),
  () => '',
);

const writeForTshark = async (lens: number[]): Promise<string> => {
  const path = tmp();
  const w = await PcapWriter.open(path);
  lens.forEach((len, i) => w.record(frame(len, i), Date.now() + i));
  await w.close();
  return path;
};

if (tshark === '') {
  t.skip('tshark reads the file (tshark is not installed)', async () => {});
} else {
  t.test('tshark reads the file', async (t) => {
    const lens = [60, 342, 1514, 9014, 65534];
    const path = await writeForTshark(lens);
    const { stdout } = await run(tshark, ['-r', path, '-T', 'fields', '-E', 'occurrence=f', '-e', 'frame.len', '-e', 'eth.src'], {
      env: { ...process.env, HOME: dir },
    });
    const rows = stdout
      .trim()
      .split('\n')
      .map((line) => line.split('\t'));
    t.strictSame(
      rows.map((r) => Number(r[0])),
      lens,
      'tshark frame.len of every record',
    );
    t.strictSame(
      rows.map((r) => r[1]),
      lens.map(() => '52:55:0a:00:02:02'),
      'decoded as Ethernet',
    );
  });
}

t.test('a partial checksum (NEEDS_CSUM either way) is completed in the capture, not in the frame', async (t) => {
  const path = tmp();
  const w = await PcapWriter.open(path);
  const whole = tcpFrame(80, 40000, 1, 1, 0x18, frame(1000, 3), { src: 0x0a000202, dst: 0x0a00020f });
  const partial = whole.slice();
  const pseudo = pseudoHeaderSumV4(0x0a000202, 0x0a00020f, 6, whole.length - 34);
  partial[50] = pseudo >> 8;
  partial[51] = pseudo & 0xff;
  const given = partial.slice();
  t.ok(w.record(partial, 1_700_000_000_000, { start: 34, offset: 16 }));
  t.same(partial, given, 'the frame itself is left alone');
  t.ok(w.record(partial, 1_700_000_000_001, { start: partial.length, offset: 16 }), 'a field past the end: recorded as is');
  await w.close();
  const { records } = readPcap(path);
  t.ok(records[0]!.data.equals(whole), 'the capture holds the complete checksum');
  t.ok(records[1]!.data.equals(partial));
});

t.test('frames longer than snaplen are cut; orig_len keeps the length', async (t) => {
  const path = tmp();
  const w = await PcapWriter.open(path, { snaplen: 64, bufferSize: 1024 });
  const f = frame(100, 9);
  w.record(f, 1000);
  w.record(frame(64, 1), 2000);
  await w.close();
  const { header, records } = readPcap(path);
  t.equal(header.readUInt32LE(16), 64, 'snaplen in the header');
  t.equal(records[0]?.inclLen, 64);
  t.equal(records[0]?.origLen, 100);
  t.ok(records[0]?.data.equals(f.subarray(0, 64)));
  t.equal(records[1]?.inclLen, 64);
  t.equal(records[1]?.origLen, 64);
  t.strictSame(w.stats, { records: 2, bytes: 128, dropped: 0 });
});

t.test('a partly filled buffer is written on a short timer, before close', async (t) => {
  const path = tmp();
  const w = await PcapWriter.open(path, { flushIntervalMs: 20 });
  w.record(frame(60, 1), 1);
  t.equal(statSync(path).size, PCAP_GLOBAL_HEADER_LEN, 'record() does not write');
  const written = PCAP_GLOBAL_HEADER_LEN + 16 + 60;
  await until(() => statSync(path).size === written, 'the timer to write', 2000).catch(() => undefined);
  t.equal(statSync(path).size, written, 'written by the timer');
  w.record(frame(61, 2), 2);
  await w.flush();
  t.equal(statSync(path).size, PCAP_GLOBAL_HEADER_LEN + 16 + 60 + 16 + 61, 'flush() writes at once');
  await w.close();
  await w.close(); // idempotent
  t.notOk(w.record(frame(60, 3), 3), 'record() after close() is refused');
  t.strictSame(w.stats, { records: 2, bytes: 121, dropped: 1 });
  t.equal(readPcap(path).records.length, 2);
});

t.test('bounded memory: when the disk is behind, records are dropped and counted, order kept', async (t) => {
  const path = tmp();
  // Two 4 KiB buffers; 1000 records of 1 KiB offered without yielding: the first write cannot
  // complete before the loop ends, so the pool runs out after about 6 records.
  const w = await PcapWriter.open(path, { snaplen: 2048, bufferSize: 4096, maxBuffers: 2 });
  const offered = 1000;
  let accepted = 0;
  for (let i = 0; i < offered; i++) {
    const f = frame(1024 - 16, 0);
    new DataView(f.buffer).setUint32(20, i); // sequence number inside the frame
    if (w.record(f, i)) accepted++;
  }
  const s = w.stats;
  t.ok(s.dropped > 0, `dropped ${s.dropped}`);
  t.ok(accepted <= 8, `at most two buffers' worth accepted (${accepted})`);
  t.equal(s.records, accepted);
  t.equal(s.records + s.dropped, offered);

  // Once writes complete, buffers return and records are accepted again.
  await w.flush();
  t.ok(w.record(frame(60, 7), offered), 'accepting again after the disk caught up');
  await w.close();

  const { records } = readPcap(path);
  t.equal(records.length, accepted + 1, 'the file holds exactly the accepted records');
  const seqs = records.slice(0, accepted).map((r) => r.data.readUInt32BE(20));
  t.strictSame(
    seqs,
    [...seqs].sort((a, b) => a - b),
    'in the order recorded',
  );
  t.equal(seqs[0], 0);
});

t.test('a failed write stops writing, is reported once and rejects close()', async (t) => {
  const path = tmp();
  const errors: PcapError[] = [];
  const w = await PcapWriter.open(path, { onError: (e) => errors.push(e) });
  // Make the file handle fail as a full disk would.
  const fh = (w as unknown as { fh: { write: (...a: unknown[]) => Promise<unknown> } }).fh;
  fh.write = () => Promise.reject(Object.assign(new Error('no space'), { code: 'ENOSPC' }));
  w.record(frame(60, 1), 1);
  w.record(frame(60, 2), 2);
  await w.flush();
  t.equal(errors.length, 1);
  t.equal(errors[0]?.message, `cannot write pcap file ${path}: ENOSPC`);
  t.notOk(w.record(frame(60, 3), 3), 'later records are dropped');
  await t.rejects(w.close(), { name: 'PcapError', code: 'ENOSPC', message: `cannot write pcap file ${path}: ENOSPC` });
  t.strictSame(w.stats, { records: 0, bytes: 0, dropped: 3 });
  t.equal(errors.length, 1, 'reported once');
});

t.test('open() fails with a clear message', async (t) => {
  const missing = join(dir, 'no-such-dir', 'x.pcap');
  await t.rejects(PcapWriter.open(missing), {
    name: 'PcapError',
    code: 'ENOENT',
    message: `cannot write pcap file ${missing}: ENOENT`,
  });
  const aDir = join(dir, 'a-dir');
  mkdirSync(aDir);
  await t.rejects(PcapWriter.open(aDir), { code: 'EISDIR', message: `cannot write pcap file ${aDir}: EISDIR` });

  t.test('EACCES', async (t) => {
    const ro = join(dir, 'read-only');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    const path = join(ro, 'x.pcap');
    const want = { name: 'PcapError', code: 'EACCES', message: `cannot write pcap file ${path}: EACCES` };
    if (process.getuid?.() !== 0) {
      await t.rejects(PcapWriter.open(path), want);
      return;
    }
    // Root ignores permissions: open as nobody. Only the effective user and group change, for
    // the moment of the call (the real and saved ones stay root, so we can come back; the
    // capabilities follow the effective user); glibc changes them in every thread, the libuv pool's
    // that performs the open too. In this process, not a child's: nothing need read the checkout
    // as nobody, which it cannot where the checkout lies under a directory only root may enter.
    chmodSync(dir, 0o755);
    const { seteuid, setegid } = process;
    if (seteuid === undefined || setegid === undefined) throw new Error('root without seteuid()');
    setegid(65534);
    seteuid(65534);
    try {
      await t.rejects(PcapWriter.open(path), want, 'as an unprivileged user');
    } finally {
      seteuid(0);
      setegid(0);
    }
    t.equal(process.geteuid?.(), 0, 'root again');
  });

  t.test('ENOSPC on the header', { skip: existsSync('/dev/full') ? false : 'no /dev/full' }, async (t) => {
    await t.rejects(PcapWriter.open('/dev/full'), {
      code: 'ENOSPC',
      message: 'cannot write pcap file /dev/full: ENOSPC',
    });
  });

  await t.rejects(PcapWriter.open(tmp(), { snaplen: 1000, bufferSize: 1000 }), RangeError, 'buffer must hold a record');
});
