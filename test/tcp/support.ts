// Test support for the TCP endpoint: segments built as bytes (what the NAT hands the endpoint),
// a recording transmitter, and a lossy link joining two endpoints on an injected clock.
import { TcpConnection } from '../../src/tcp/endpoint.js';
import type { OutSegment, TcpConfig, TcpEvents, TcpTransmitter } from '../../src/tcp/endpoint.js';
import { TcpOptions, TcpSegment, emitTcpV4, tcpHeaderLength } from '../../src/wire/index.js';

export const A = 0x0a00020f;
export const B = 0xc0000209;

export interface Sent {
  flags: number;
  seq: number;
  ack: number;
  window: number;
  mss: number;
  wscale: number;
  sackPermitted: boolean;
  ts: boolean;
  tsVal: number;
  tsEcr: number;
  sack: number[];
  data: number[];
}

/** Builds the bytes of a segment (as it would arrive) and a view over them. */
export function segment(p: {
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  data?: Uint8Array | number[];
  options?: Partial<TcpOptions>;
}): TcpSegment {
  const o = new TcpOptions();
  if (p.options) Object.assign(o, p.options);
  const data = p.data instanceof Uint8Array ? p.data : Uint8Array.from(p.data ?? []);
  const repr = {
    srcPort: 1,
    dstPort: 2,
    seq: p.seq >>> 0,
    ack: (p.ack ?? 0) >>> 0,
    flags: p.flags,
    window: p.window ?? 0xffff,
    payloadLength: data.length,
    options: o,
  };
  const hl = tcpHeaderLength(repr);
  const b = new Uint8Array(hl + data.length);
  b.set(data, hl);
  emitTcpV4(b, 0, repr, A, B);
  return new TcpSegment().at(b, 0, b.length);
}

/** Records what a connection sends (a copy of each segment). */
export class Recorder implements TcpTransmitter {
  sent: Sent[] = [];
  refuse = false;
  transmit(conn: TcpConnection, s: OutSegment): boolean {
    if (this.refuse) return false;
    const data = new Uint8Array(s.dataLength);
    conn.copySendData(s.dataOffset, s.dataLength, data, 0);
    const o = s.options;
    this.sent.push({
      flags: s.flags,
      seq: s.seq,
      ack: s.ack,
      window: s.window,
      mss: o.mss,
      wscale: o.windowScale,
      sackPermitted: o.sackPermitted,
      ts: o.timestamp,
      tsVal: o.tsVal,
      tsEcr: o.tsEcr,
      sack: Array.from(o.sackBlocks.subarray(0, 2 * o.sackCount)),
      data: [...data],
    });
    return true;
  }
  take(): Sent[] {
    return this.sent.splice(0);
  }
}

export interface Log {
  established: number;
  data: number[];
  peerClosed: number;
  sendSpace: number;
  aborted: string[];
  closed: number;
  /** How much events.data takes (Infinity: everything). */
  accept: number;
}

export function recordingEvents(log: Log): TcpEvents {
  return {
    established: () => void log.established++,
    data: (_c, d) => {
      const n = Math.min(d.length, log.accept);
      log.data.push(...d.subarray(0, n));
      return n;
    },
    peerClosed: () => void log.peerClosed++,
    sendSpace: () => void log.sendSpace++,
    aborted: (_c, r) => void log.aborted.push(r),
    closed: () => void log.closed++,
  };
}

export function newLog(): Log {
  return { established: 0, data: [], peerClosed: 0, sendSpace: 0, aborted: [], closed: 0, accept: Infinity };
}

export function makeConn(config: Partial<TcpConfig> = {}, iss = 1000) {
  const rec = new Recorder();
  const log = newLog();
  const conn = new TcpConnection({ mss: 1460, ...config }, recordingEvents(log), rec, { iss, tsOffset: 0 });
  return { conn, rec, log };
}

/** A deterministic PRNG (mulberry32, the simulated network's). */
export { mulberry32 as prng } from '../../src/sim/network.js';
