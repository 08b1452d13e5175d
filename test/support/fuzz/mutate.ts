// Frame mutations: blind ones (bit flips, interesting bytes and words, truncation, extension,
// splicing two frames) and aimed ones (a header field found by layoutOf() set to a value parsers
// care about: IHL, lengths ±1, protocol and next header, fragment offset and MF, TTL, ports, TCP
// data offset and flags, option lengths, ICMP types and codes, addresses). Afterwards the IP
// lengths and the checksums are made consistent again some of the time, so the input reaches the
// parsers behind the checks instead of being dropped at the first one.
import type { Rng } from './rng.js';
import { ADDRESSES4, ADDRESSES6, MACS, concat } from './corpus.js';
import { ETH, fixChecksums, fixLengths, layoutOf } from './layout.js';
import type { FrameLayout } from './layout.js';

/** Byte values that sit on boundaries parsers compare against. */
const BYTES = [0, 1, 2, 4, 5, 8, 0x0f, 0x10, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff] as const;
const WORDS = [0, 1, 7, 8, 20, 40, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x7fff, 0x8000, 0xfff8, 0xfffe, 0xffff] as const;
const PROTOCOLS = [0, 1, 2, 4, 6, 17, 41, 43, 44, 50, 51, 58, 59, 60, 103, 132, 135, 253, 255] as const;
const ETHERTYPES = [0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x0000, 0x05dc, 0x0600, 0xffff] as const;
const PORTS = [0, 1, 7, 9, 53, 67, 68, 80, 123, 443, 546, 547, 5353, 33434, 65535] as const;
const ICMP4_TYPES = [0, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 17, 18, 40, 255] as const;
const ICMP6_TYPES = [1, 2, 3, 4, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 143, 255] as const;

/** A described mutation, for the regression file and for humans. */
export interface Mutated {
  frame: Uint8Array;
  ops: string[];
}

export class FrameMutator {
  constructor(
    private readonly rng: Rng,
    private readonly corpus: readonly { name: string; frame: Uint8Array }[],
  ) {}

  /** `frame` (a copy) mutated once, its lengths and checksums repaired or not. */
  mutateOnce(frame: Uint8Array): Mutated {
    const ops: string[] = [];
    const f = this.once(frame.slice(), ops);
    if (this.rng.chance(0.5)) {
      fixChecksums(f);
      ops.push('fix-checksums');
    }
    return { frame: f, ops };
  }

  /** A frame from the corpus, mutated 0..5 times (0 sometimes: valid traffic keeps state alive). */
  next(): Mutated & { base: string } {
    const r = this.rng;
    const base = r.pick(this.corpus);
    let f: Uint8Array = base.frame.slice();
    const ops: string[] = [];
    const n = r.weighted<number>([
      [1, 0],
      [5, 1],
      [3, 2],
      [2, 3],
      [1, 5],
    ]);
    for (let i = 0; i < n; i++) f = this.once(f, ops);
    if (n > 0) {
      if (r.chance(0.3)) {
        fixLengths(f);
        ops.push('fix-lengths');
      }
      if (r.chance(0.6)) {
        fixChecksums(f);
        ops.push('fix-checksums');
      }
    }
    return { frame: f, ops, base: base.name };
  }

  private once(f: Uint8Array, ops: string[]): Uint8Array {
    const r = this.rng;
    const kind = r.weighted<string>([
      [4, 'bitflip'],
      [3, 'byte'],
      [2, 'word'],
      [10, 'field'],
      [3, 'option-length'],
      [3, 'truncate'],
      [2, 'extend'],
      [2, 'splice'],
      [1, 'insert'],
      [1, 'delete'],
    ]);
    switch (kind) {
      case 'bitflip': {
        if (f.length === 0) return f;
        const at = this.position(f);
        const bit = r.int(8);
        f[at]! ^= 1 << bit;
        ops.push(`bitflip@${at}.${bit}`);
        return f;
      }
      case 'byte': {
        if (f.length === 0) return f;
        const at = this.position(f);
        const v = r.chance(0.3) ? (f[at]! + (r.chance(0.5) ? 1 : -1)) & 0xff : r.pick(BYTES);
        f[at] = v;
        ops.push(`byte@${at}=${v}`);
        return f;
      }
      case 'word': {
        if (f.length < 2) return f;
        const at = this.position(f) & ~1;
        if (at + 2 > f.length) return f;
        const v = this.word(f.length);
        f[at] = v >> 8;
        f[at + 1] = v & 0xff;
        ops.push(`word@${at}=${v}`);
        return f;
      }
      case 'field':
        return this.field(f, ops);
      case 'option-length':
        return this.optionLength(f, ops);
      case 'truncate': {
        const l = layoutOf(f);
        const cuts = [
          ETH,
          ETH - 1,
          l.l3 + 1,
          l.l3 + l.ipHeaderLen - 1,
          l.l3 + l.ipHeaderLen,
          l.l4 + 1,
          l.l4 + 7,
          l.l4 + 8,
          l.l4 + 19,
          l.end - 1,
          f.length - 1,
          r.int(f.length),
        ];
        const to = Math.max(0, Math.min(f.length, r.pick(cuts.filter((c) => c >= 0))));
        ops.push(`truncate@${to}`);
        return f.slice(0, to);
      }
      case 'extend': {
        const n = r.weighted<number>([
          [8, r.range(1, 64)],
          [2, r.range(65, 1600)],
          [1, r.pick([9000, 65535 - f.length + 14, 65550 - f.length, 65551 - f.length, 70000 - f.length])],
        ]);
        const add = Math.max(1, n);
        const fill = r.chance(0.5) ? new Uint8Array(add).fill(r.pick(BYTES)) : r.bytes(add);
        ops.push(`extend+${add}`);
        return concat(f, fill);
      }
      case 'splice': {
        const other = r.pick(this.corpus).frame;
        const l = layoutOf(f);
        const cut = r.pick([ETH, l.l3 + l.ipHeaderLen, l.l4 > 0 ? l.l4 : ETH, r.int(f.length + 1)].filter((c) => c >= 0 && c <= f.length));
        const from = r.chance(0.5) ? Math.min(cut, other.length) : r.int(other.length + 1);
        ops.push(`splice@${cut}+other@${from}`);
        return concat(f.subarray(0, cut), other.subarray(from));
      }
      case 'insert': {
        const at = r.int(f.length + 1);
        const n = r.range(1, 16);
        ops.push(`insert@${at}+${n}`);
        return concat(f.subarray(0, at), r.bytes(n), f.subarray(at));
      }
      default: {
        if (f.length === 0) return f;
        const at = r.int(f.length);
        const n = Math.min(f.length - at, r.range(1, 16));
        ops.push(`delete@${at}-${n}`);
        return concat(f.subarray(0, at), f.subarray(at + n));
      }
    }
  }

  /** A position biased toward the headers, where the parsing happens. */
  private position(f: Uint8Array): number {
    const r = this.rng;
    return r.chance(0.8) ? r.int(Math.min(f.length, 96)) : r.int(f.length);
  }

  private word(len: number): number {
    const r = this.rng;
    if (r.chance(0.3)) return Math.max(0, Math.min(0xffff, len - ETH + r.range(-2, 2)));
    return r.pick(WORDS);
  }

  private set16(f: Uint8Array, at: number, v: number): void {
    if (at < 0 || at + 2 > f.length) return;
    f[at] = (v >> 8) & 0xff;
    f[at + 1] = v & 0xff;
  }

  private set8(f: Uint8Array, at: number, v: number): void {
    if (at >= 0 && at < f.length) f[at] = v & 0xff;
  }

  /** One header field, aimed. */
  private field(f: Uint8Array, ops: string[]): Uint8Array {
    const r = this.rng;
    const l = layoutOf(f);
    const choices: (readonly [number, string])[] = [
      [1, 'eth.dst'],
      [1, 'eth.src'],
      [1, 'eth.type'],
    ];
    if (l.etherType === 0x0806) choices.push([4, 'arp']);
    if (l.family === 4) choices.push([10, 'ipv4']);
    if (l.family === 6) choices.push([10, 'ipv6']);
    if (l.ext.length > 0) choices.push([4, 'ext']);
    if (l.l4 >= 0) choices.push([10, 'l4']);
    const which = r.weighted(choices);
    const l3 = l.l3;
    const desc = (name: string, v: number | string): void => void ops.push(`field ${name}=${v}`);
    switch (which) {
      case 'eth.dst': {
        const mac = r.pick(MACS);
        f.set(mac.subarray(0, Math.min(6, f.length)), 0);
        desc('eth.dst', Buffer.from(mac).toString('hex'));
        break;
      }
      case 'eth.src': {
        const mac = r.pick(MACS);
        if (f.length >= 12) f.set(mac, 6);
        desc('eth.src', Buffer.from(mac).toString('hex'));
        break;
      }
      case 'eth.type': {
        const v = r.pick(ETHERTYPES);
        this.set16(f, 12, v);
        desc('eth.type', v);
        break;
      }
      case 'arp': {
        const o = l3 + r.pick([0, 2, 4, 5, 6, 14, 24]);
        const v = o === l3 + 6 ? r.pick([0, 1, 2, 3, 4, 0xffff]) : o === l3 + 14 || o === l3 + 24 ? -1 : r.pick(WORDS);
        if (v === -1) {
          const a = r.pick(ADDRESSES4);
          if (o + 4 <= f.length) f.set([a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff], o);
          desc(`arp@${o - l3}`, a >>> 0);
        } else if (o === l3 + 4 || o === l3 + 5) {
          this.set8(f, o, r.pick(BYTES));
          desc(`arp@${o - l3}`, f[o] ?? -1);
        } else {
          this.set16(f, o, v);
          desc(`arp@${o - l3}`, v);
        }
        break;
      }
      case 'ipv4': {
        const field = r.pick(['version-ihl', 'ihl', 'tos', 'total', 'id', 'frag', 'ttl', 'proto', 'checksum', 'src', 'dst']);
        switch (field) {
          case 'version-ihl': {
            const v = r.pick([0x45, 0x46, 0x4f, 0x44, 0x40, 0x65, 0x05, 0xff]);
            this.set8(f, l3, v);
            desc('ipv4.ver-ihl', v);
            break;
          }
          case 'ihl': {
            const ihl = r.pick([0, 1, 4, 5, 6, 7, 15, ((l.ipHeaderLen >> 2) + r.range(-1, 1)) & 0xf]);
            this.set8(f, l3, 0x40 | ihl);
            desc('ipv4.ihl', ihl);
            break;
          }
          case 'tos':
            this.set8(f, l3 + 1, r.pick(BYTES));
            desc('ipv4.tos', f[l3 + 1] ?? -1);
            break;
          case 'total': {
            const v = r.chance(0.5)
              ? Math.max(0, f.length - l3 + r.range(-2, 2))
              : r.pick([0, 19, 20, 21, l.ipHeaderLen, l.ipHeaderLen + 7, l.ipHeaderLen + 8, 576, 0xffff]);
            this.set16(f, l3 + 2, v);
            desc('ipv4.total', v);
            break;
          }
          case 'id':
            this.set16(f, l3 + 4, r.pick(WORDS));
            desc('ipv4.id', 'x');
            break;
          case 'frag': {
            const flags = r.pick([0, 0x2000, 0x4000, 0x6000, 0x8000]);
            const off = r.pick([0, 1, 2, 185, 0x1fff, r.int(0x2000)]);
            this.set16(f, l3 + 6, flags | off);
            desc('ipv4.frag', flags | off);
            break;
          }
          case 'ttl': {
            const v = r.pick([0, 1, 2, 64, 255]);
            this.set8(f, l3 + 8, v);
            desc('ipv4.ttl', v);
            break;
          }
          case 'proto': {
            const v = r.chance(0.8) ? r.pick(PROTOCOLS) : r.int(256);
            this.set8(f, l3 + 9, v);
            desc('ipv4.proto', v);
            break;
          }
          case 'checksum':
            this.set16(f, l3 + 10, r.pick(WORDS));
            desc('ipv4.checksum', 'x');
            break;
          default: {
            const a = r.pick(ADDRESSES4);
            const o = l3 + (field === 'src' ? 12 : 16);
            if (o + 4 <= f.length) f.set([a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff], o);
            desc(`ipv4.${field}`, a >>> 0);
          }
        }
        break;
      }
      case 'ipv6': {
        const field = r.pick(['version', 'plen', 'nh', 'hop', 'src', 'dst']);
        switch (field) {
          case 'version': {
            const v = r.pick([0x60, 0x40, 0x00, 0x6f, 0xf0]);
            this.set8(f, l3, v);
            desc('ipv6.version', v);
            break;
          }
          case 'plen': {
            const v = r.chance(0.5) ? Math.max(0, f.length - l3 - 40 + r.range(-2, 2)) : r.pick([0, 1, 7, 8, 40, 0xffff]);
            this.set16(f, l3 + 4, v);
            desc('ipv6.plen', v);
            break;
          }
          case 'nh': {
            const v = r.chance(0.8) ? r.pick(PROTOCOLS) : r.int(256);
            this.set8(f, l3 + 6, v);
            desc('ipv6.nh', v);
            break;
          }
          case 'hop': {
            const v = r.pick([0, 1, 2, 64, 254, 255]);
            this.set8(f, l3 + 7, v);
            desc('ipv6.hop', v);
            break;
          }
          default: {
            const a = r.pick(ADDRESSES6);
            const o = l3 + (field === 'src' ? 8 : 24);
            if (o + 16 <= f.length) f.set(a, o);
            desc(`ipv6.${field}`, Buffer.from(a).toString('hex'));
          }
        }
        break;
      }
      case 'ext': {
        const at = r.pick(l.ext);
        if (at === l.ipv6Frag && r.chance(0.6)) {
          const off = r.pick([0, 8, 1448, 0xfff8, r.int(0x10000) & 0xfff8]);
          const m = r.int(2);
          this.set16(f, at + 2, off | m | (r.chance(0.1) ? 6 : 0));
          desc('ipv6.frag', off | m);
        } else if (r.chance(0.5)) {
          const v = r.pick(PROTOCOLS);
          this.set8(f, at, v);
          desc('ext.nh', v);
        } else {
          const v = r.pick(BYTES);
          this.set8(f, at + 1, v);
          desc('ext.len', v);
        }
        break;
      }
      default:
        this.transport(f, l, desc);
    }
    return f;
  }

  private transport(f: Uint8Array, l: FrameLayout, desc: (name: string, v: number | string) => void): void {
    const r = this.rng;
    const t = l.l4;
    switch (l.proto) {
      case 6: {
        const field = r.pick(['sport', 'dport', 'seq', 'ack', 'doff', 'flags', 'window', 'urgent', 'checksum']);
        switch (field) {
          case 'sport':
          case 'dport': {
            const v = r.pick(PORTS);
            this.set16(f, t + (field === 'sport' ? 0 : 2), v);
            desc(`tcp.${field}`, v);
            break;
          }
          case 'seq':
          case 'ack': {
            const o = t + (field === 'seq' ? 4 : 8);
            if (o + 4 <= f.length) {
              const v = r.pick([0, 1, 0x7fffffff, 0x80000000, 0xffffffff, r.u32()]);
              f.set([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff], o);
              desc(`tcp.${field}`, v);
            }
            break;
          }
          case 'doff': {
            const v = r.pick([0, 1, 4, 5, 6, 8, 15, r.int(16)]);
            this.set8(f, t + 12, (v << 4) | ((f[t + 12] ?? 0) & 0x0f));
            desc('tcp.doff', v);
            break;
          }
          case 'flags': {
            const v = r.pick([0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x03, 0x06, 0x07, 0x3f, 0xff, 0x00, 0x29, 0x01, r.int(256)]);
            this.set8(f, t + 13, v);
            desc('tcp.flags', v);
            break;
          }
          case 'window': {
            const v = r.pick([0, 1, 0xffff]);
            this.set16(f, t + 14, v);
            desc('tcp.window', v);
            break;
          }
          case 'urgent':
            this.set16(f, t + 18, r.pick(WORDS));
            desc('tcp.urgent', 'x');
            break;
          default:
            this.set16(f, t + 16, r.pick(WORDS));
            desc('tcp.checksum', 'x');
        }
        return;
      }
      case 17: {
        const field = r.pick(['sport', 'dport', 'dport', 'len', 'len', 'checksum']);
        if (field === 'len') {
          const v = r.chance(0.5) ? Math.max(0, l.end - t + r.range(-2, 2)) : r.pick([0, 1, 7, 8, 9, 0xffff]);
          this.set16(f, t + 4, v);
          desc('udp.len', v);
        } else if (field === 'checksum') {
          this.set16(f, t + 6, r.pick([0, 0xffff, 1]));
          desc('udp.checksum', 'x');
        } else {
          const v = r.pick(PORTS);
          this.set16(f, t + (field === 'sport' ? 0 : 2), v);
          desc(`udp.${field}`, v);
        }
        return;
      }
      case 1:
      case 2:
      case 58: {
        if (r.chance(0.6)) {
          const v = l.proto === 58 ? r.pick(ICMP6_TYPES) : l.proto === 1 ? r.pick(ICMP4_TYPES) : r.pick([0x11, 0x12, 0x16, 0x17, 0x22, 0x1e, 0]);
          this.set8(f, t, v);
          desc('icmp.type', v);
        } else if (r.chance(0.6)) {
          const v = r.pick([0, 1, 2, 3, 4, 5, 13, 0xff]);
          this.set8(f, t + 1, v);
          desc('icmp.code', v);
        } else {
          // The 4 bytes after the checksum: identifier/sequence, MTU, pointer, record counts.
          const o = t + 4 + r.int(4);
          this.set8(f, o, r.pick(BYTES));
          desc(`icmp.rest@${o - t}`, f[o] ?? -1);
        }
        return;
      }
      default: {
        const o = t + r.int(8);
        this.set8(f, o, r.pick(BYTES));
        desc(`l4@${o - t}`, f[o] ?? -1);
      }
    }
  }

  /** Sets the length byte of one option in a TLV area: IPv4 options, TCP options, IPv6
   *  extension header options, NDP options (length in 8-byte units), DHCP options. */
  private optionLength(f: Uint8Array, ops: string[]): Uint8Array {
    const r = this.rng;
    const l = layoutOf(f);
    const areas: [start: number, end: number, kind: string][] = [];
    if (l.ipv4Options[1] > l.ipv4Options[0]) areas.push([l.ipv4Options[0], l.ipv4Options[1], 'ipv4']);
    if (l.proto === 6 && l.l4 >= 0 && l.l4 + 20 <= f.length) {
      const hl = ((f[l.l4 + 12]! >> 4) & 0xf) * 4;
      if (hl > 20) areas.push([l.l4 + 20, Math.min(f.length, l.l4 + hl), 'tcp']);
    }
    for (const at of l.ext) if (at !== l.ipv6Frag) areas.push([at + 2, Math.min(f.length, at + (f[at + 1]! + 1) * 8), 'ext']);
    if (l.proto === 58 && l.l4 >= 0) {
      const type = f[l.l4]!;
      const fixed = type === 133 ? 8 : type === 134 ? 16 : type === 135 || type === 136 ? 24 : type === 137 ? 40 : -1;
      if (fixed > 0 && l.l4 + fixed < l.end) areas.push([l.l4 + fixed, l.end, 'ndp']);
    }
    if (l.proto === 17 && l.l4 >= 0) {
      const dport = (f[l.l4 + 2]! << 8) | f[l.l4 + 3]!;
      if (dport === 67 && l.l4 + 8 + 240 < l.end) areas.push([l.l4 + 8 + 240, l.end, 'dhcp']);
      if (dport === 547 && l.l4 + 12 < l.end) areas.push([l.l4 + 12, l.end, 'dhcp6']);
    }
    if (areas.length === 0) return this.field(f, ops);
    const [start, end, kind] = r.pick(areas);
    // Walk the TLVs to find option starts (single-byte options: IPv4/TCP EOL and NOP, Pad1, DHCP pad).
    const starts: number[] = [];
    for (let o = start; o < end && starts.length < 32;) {
      const type = f[o]!;
      if ((kind === 'ipv4' || kind === 'tcp') && type <= 1) {
        o++;
        continue;
      }
      if (kind === 'ext' && type === 0) {
        o++;
        continue;
      }
      if (kind === 'dhcp' && (type === 0 || type === 255)) {
        o++;
        continue;
      }
      starts.push(o);
      if (kind === 'dhcp6') {
        if (o + 4 > end) break;
        o += 4 + ((f[o + 2]! << 8) | f[o + 3]!);
        continue;
      }
      if (o + 1 >= end) break;
      const len = f[o + 1]!;
      o += kind === 'ndp' ? len * 8 : kind === 'ext' || kind === 'dhcp' ? 2 + len : len;
      if (len === 0) break;
    }
    if (starts.length === 0) return this.field(f, ops);
    const at = r.pick(starts);
    if (kind === 'dhcp6') {
      const cur = (f[at + 2]! << 8) | f[at + 3]!;
      const v = r.pick([0, 1, cur - 1, cur + 1, 0xffff, end - at - 4, end - at - 3]);
      this.set16(f, at + 2, Math.max(0, Math.min(0xffff, v)));
      ops.push(`option-length ${kind}@${at}=${v}`);
      return f;
    }
    const cur = f[at + 1] ?? 0;
    const v = r.pick([0, 1, 2, 3, cur - 1, cur + 1, 0xff, end - at, end - at + 1, 0x80]) & 0xff;
    this.set8(f, at + 1, v);
    ops.push(`option-length ${kind}@${at}=${v}`);
    return f;
  }
}

/** virtio-net headers for TX: mostly plain, sometimes NEEDS_CSUM with offsets in or out of the
 *  frame, rarely a GSO type (vunet offers none, so it must refuse those). */
export function mutateNetHeader(rng: Rng, frameLen: number): Uint8Array {
  const h = new Uint8Array(12);
  const kind = rng.weighted<string>([
    [20, 'plain'],
    [4, 'csum'],
    [1, 'gso'],
    [1, 'garbage'],
  ]);
  if (kind === 'csum') {
    h[0] = 1;
    const start = rng.pick([14, 34, 54, 0, frameLen, frameLen - 1, 0xffff]);
    const off = rng.pick([6, 16, 2, 0, 0xffff]);
    h[6] = start & 0xff;
    h[7] = (start >> 8) & 0xff;
    h[8] = off & 0xff;
    h[9] = (off >> 8) & 0xff;
  } else if (kind === 'gso') {
    h[1] = rng.pick([1, 3, 4, 0x80, 0x81]);
    h[4] = 0xdc;
    h[5] = 0x05;
  } else if (kind === 'garbage') {
    h.set(rng.bytes(12));
    h[1] = 0;
  }
  return h;
}
