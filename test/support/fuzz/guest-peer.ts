// A guest that keeps up its side of a few conversations between the hostile frames of frames
// mode: it answers vunet's ARP requests and neighbor solicitations for its addresses, and carries
// TCP connections to the target's loopback services (target.ts) past the handshake — ACKs what
// vunet sends, sends data in and out of order, old and future, announces zero windows, repeats
// ACKs, sends SYNs on open connections, FINs and RSTs — some of it mutated once. Mutated frames
// alone rarely match a connection's sequence numbers, so without this the TCP endpoint's data,
// window and close paths and the NAT's host-side writes would hardly run.
//
// vunet's initial sequence numbers are random, so this part of a run is not reproduced by its
// seed; a regression file holds the frames as they were sent.
import { ArpOp, EtherType, IpProtocol, TcpFlags, TcpOptions } from '../../../src/wire/index.js';
import { DNS_IP, GUEST_IP, GUEST_MAC, GW_IP } from '../packets.js';
import { DNS6, GUEST_GLOBAL, GUEST_LL, GW6, arp, concat, ip4, ip6, tcp } from './corpus.js';
import type { FrameMutator } from './mutate.js';
import type { Rng } from './rng.js';
import { layoutOf } from './layout.js';

interface Flow {
  family: 4 | 6;
  /** The remote address as the guest addresses it (4 or 16 bytes). */
  dst: Uint8Array;
  sport: number;
  dport: number;
  /** Next sequence number the guest sends. */
  snd: number;
  /** Next sequence number expected from vunet. */
  rcv: number;
  open: boolean;
  /** vunet sent something since the guest last acknowledged. */
  unacked: boolean;
}

const MAX_FLOWS = 64;
const SERVICES = [80, 80, 7, 53] as const;

const u32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const same = (a: Uint8Array, b: Uint8Array, off: number): boolean => a.every((v, i) => b[off + i] === v);
const v4bytes = (a: number): Uint8Array => Uint8Array.of(a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff);

export interface PeerFrame {
  frame: Uint8Array;
  base: string;
  ops?: string[];
}

export class GuestPeer {
  private readonly flows = new Map<string, Flow>();
  private readonly answers: PeerFrame[] = [];
  private nextPort = 0;

  constructor(
    private readonly rng: Rng,
    private readonly mutator: FrameMutator,
  ) {
    this.nextPort = 20000 + rng.int(20000);
  }

  /** vunet went away or the connection changed: its flows are gone. */
  reset(): void {
    this.flows.clear();
    this.answers.length = 0;
  }

  private key(family: number, dst: Uint8Array, sport: number, dport: number): string {
    return `${family}/${dst.join('.')}/${sport}/${dport}`;
  }

  /** A frame vunet sent to the guest. */
  observe(f: Uint8Array): void {
    const l = layoutOf(f);
    if (l.etherType === EtherType.ARP && f.length >= 42) {
      const op = (f[20]! << 8) | f[21]!;
      if (op === ArpOp.REQUEST && u32(f, 38) === GUEST_IP) {
        this.answers.push({ frame: arp(ArpOp.REPLY, GUEST_IP, u32(f, 28), f.subarray(22, 28), f.subarray(6, 12)), base: 'peer.arp-reply' });
      }
      return;
    }
    if (l.proto === IpProtocol.ICMPV6 && l.l4 >= 0 && f[l.l4] === 135 && l.l4 + 24 <= f.length) {
      const target = f.subarray(l.l4 + 8, l.l4 + 24);
      if (same(GUEST_GLOBAL, target, 0) || same(GUEST_LL, target, 0)) {
        const src = f.subarray(l.l3 + 8, l.l3 + 24).slice();
        const dst = src.every((b) => b === 0) ? Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1) : src;
        const na = concat(Uint8Array.of(136, 0, 0, 0, dst === src ? 0x60 : 0x20, 0, 0, 0), target.slice(), Uint8Array.of(2, 1, ...GUEST_MAC));
        this.answers.push({
          frame: ip6({ src: target.slice(), dst, hop: 255, dstMac: f.subarray(6, 12).slice() }, IpProtocol.ICMPV6, na),
          base: 'peer.neighbor-advert',
        });
      }
      return;
    }
    if (l.proto !== IpProtocol.TCP || l.l4 < 0 || l.l4 + 20 > f.length) return;
    const t = l.l4;
    const remote = l.family === 4 ? f.subarray(l.l3 + 12, l.l3 + 16) : f.subarray(l.l3 + 8, l.l3 + 24);
    const flow = this.flows.get(this.key(l.family, remote, (f[t + 2]! << 8) | f[t + 3]!, (f[t]! << 8) | f[t + 1]!));
    if (!flow) return;
    const seq = u32(f, t + 4);
    const ack = u32(f, t + 8);
    const flags = f[t + 13]!;
    const len = Math.max(0, l.end - t - ((f[t + 12]! >> 4) & 0xf) * 4);
    if ((flags & TcpFlags.RST) !== 0) {
      this.flows.delete(this.key(flow.family, flow.dst, flow.sport, flow.dport));
      return;
    }
    if ((flags & TcpFlags.SYN) !== 0 && (flags & TcpFlags.ACK) !== 0) {
      flow.rcv = (seq + 1) >>> 0;
      flow.snd = ack;
      flow.open = true;
      flow.unacked = true;
      return;
    }
    const end = (seq + len + ((flags & TcpFlags.FIN) !== 0 ? 1 : 0)) >>> 0;
    // Later than what we expect (mod 2^32, within a window's reach): take it as received.
    if (((end - flow.rcv) | 0) > 0) flow.rcv = end;
    if (len > 0 || (flags & TcpFlags.FIN) !== 0) flow.unacked = true;
  }

  /** Frames for the next batch: answers first, then a few segments of open connections and
   *  maybe a new connection. */
  frames(): PeerFrame[] {
    const r = this.rng;
    const out = this.answers.splice(0, this.answers.length);
    const flows = [...this.flows.values()];
    for (const fl of flows) {
      if (fl.unacked) {
        out.push(this.segment(fl, 'ack'));
        fl.unacked = false;
      }
    }
    const busy = r.int(Math.min(4, flows.length) + 1);
    for (let i = 0; i < busy; i++) {
      const fl = r.pick(flows);
      if (!fl.open) continue;
      const action = r.weighted<string>([
        [8, 'data'],
        [2, 'big-data'],
        [2, 'future'],
        [2, 'old'],
        [2, 'zero-window'],
        [2, 'dup-acks'],
        [2, 'sack'],
        [1, 'syn-again'],
        [2, 'fin'],
        [1, 'rst'],
      ]);
      if (action === 'dup-acks') out.push(this.segment(fl, 'ack'), this.segment(fl, 'ack'), this.segment(fl, 'ack'));
      else out.push(this.segment(fl, action));
    }
    if (this.flows.size < MAX_FLOWS && r.chance(0.3)) out.push(this.connect());
    // Some of it mutated once, as the rest of the fuzzing is.
    return out.map((p) => {
      if (!r.chance(0.15)) return p;
      const m = this.mutator.mutateOnce(p.frame);
      return { frame: m.frame, base: p.base, ops: m.ops };
    });
  }

  private connect(): PeerFrame {
    const r = this.rng;
    const family: 4 | 6 = r.chance(0.6) ? 4 : 6;
    const dport = r.pick(SERVICES);
    const dst = family === 4 ? v4bytes(dport === 53 ? DNS_IP : GW_IP) : dport === 53 ? DNS6 : GW6;
    const sport = (this.nextPort = this.nextPort >= 60000 ? 20000 : this.nextPort + 1);
    const isn = r.u32();
    const fl: Flow = { family, dst, sport, dport, snd: (isn + 1) >>> 0, rcv: 0, open: false, unacked: false };
    this.flows.set(this.key(family, dst, sport, dport), fl);
    const o = new TcpOptions();
    o.mss = r.pick([536, 1460, 8960, 65475]);
    o.windowScale = r.pick([-1, 0, 7, 14]);
    o.sackPermitted = r.chance(0.7);
    return { frame: this.frame(fl, { seq: isn, ack: 0, flags: TcpFlags.SYN, options: o }), base: `peer.syn.${family}.${dport}` };
  }

  private segment(fl: Flow, action: string): PeerFrame {
    const r = this.rng;
    const ack = { seq: fl.snd, ack: fl.rcv, flags: TcpFlags.ACK };
    let seg: Parameters<typeof tcp>[0];
    switch (action) {
      case 'data':
      case 'big-data': {
        const n = action === 'data' ? r.range(1, 1400) : r.range(1401, 60000);
        seg = { ...ack, flags: TcpFlags.ACK | TcpFlags.PSH, data: new Uint8Array(n).fill(0x40 + r.int(26)) };
        fl.snd = (fl.snd + n) >>> 0;
        break;
      }
      case 'future':
        seg = { ...ack, seq: (fl.snd + r.range(1, 100000)) >>> 0, data: new Uint8Array(r.range(1, 1400)) };
        break;
      case 'old':
        seg = { ...ack, seq: (fl.snd - r.range(1, 3000)) >>> 0, data: new Uint8Array(r.range(1, 1400)) };
        break;
      case 'zero-window':
        seg = { ...ack, window: 0 };
        break;
      case 'sack': {
        const o = new TcpOptions();
        const n = r.range(1, 4);
        for (let i = 0; i < n; i++) {
          const left = (fl.rcv + r.range(-2000, 100000)) >>> 0;
          o.addSackBlock(left, (left + r.range(0, 3000)) >>> 0);
        }
        seg = { ...ack, options: o };
        break;
      }
      case 'syn-again':
        seg = { seq: (fl.snd - 1) >>> 0, ack: 0, flags: TcpFlags.SYN };
        break;
      case 'fin':
        seg = { ...ack, flags: TcpFlags.ACK | TcpFlags.FIN };
        fl.snd = (fl.snd + 1) >>> 0;
        break;
      case 'rst':
        seg = { ...ack, flags: r.chance(0.5) ? TcpFlags.RST : TcpFlags.RST | TcpFlags.ACK };
        this.flows.delete(this.key(fl.family, fl.dst, fl.sport, fl.dport));
        break;
      default:
        seg = ack;
    }
    return { frame: this.frame(fl, seg), base: `peer.${action}` };
  }

  private frame(fl: Flow, s: Parameters<typeof tcp>[0]): Uint8Array {
    const m = tcp({ sport: fl.sport, dport: fl.dport, window: 65535, ...s });
    if (fl.family === 4) return ip4({ src: GUEST_IP, dst: u32(fl.dst, 0), proto: IpProtocol.TCP }, m);
    return ip6({ src: GUEST_GLOBAL, dst: fl.dst }, IpProtocol.TCP, m);
  }
}
