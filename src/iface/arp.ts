// ARP on the guest link (RFC 826): answers for our addresses, what the guest's requests and replies
// teach the neighbour cache (the machine of neighbor.ts, as RFC 1122 §2.3.2 runs it), the requests
// that cache sends, and the RFC 5227 claims of our addresses (arp-claim.ts) the guest's packets
// are checked against. Read RFC 826, RFC 1122 §2.3.2 and RFC 5227 §2 before editing.
import { AddressClaims } from './arp-claim.js';
import type { LayerContext } from './layer.js';
import type { NeighborCache } from './neighbor.js';
import { ArpOp, ArpPacket, EtherType, MAC_BROADCAST, emitArp, emitEthernetHeader, formatIpv4, formatMac, ipv4InSubnet } from '../wire/index.js';
import type { EthernetFrame } from '../wire/index.js';

const ZERO_MAC = new Uint8Array(6);

export class Arp {
  /** RFC 5227 claims of our addresses (the gateway's first). */
  readonly claims: AddressClaims;
  private readonly arp = new ArpPacket();
  /** The ARP packet being checked against the claims (for the conflict's log line). */
  private heardFrom: Uint8Array = new Uint8Array(6);
  private heardMacOffset = 0;

  constructor(
    private readonly s: LayerContext,
    private readonly neighbors: NeighborCache<number>,
    private readonly isOurs: (addr: number) => boolean,
  ) {
    this.claims = new AddressClaims(
      [s.config.ipv4.gateway, s.config.ipv4.dns],
      {
        // Probe: sender IP 0 (RFC 5227 §2.1.1). Announcement: sender and target IP both ours (§2.3).
        probe: (addr) => {
          this.send(ArpOp.REQUEST, 0, MAC_BROADCAST, addr, ZERO_MAC);
          s.counters.add('arp.probeOut');
        },
        announce: (addr) => {
          this.send(ArpOp.REQUEST, addr, MAC_BROADCAST, addr, ZERO_MAC);
          s.counters.add('arp.announceOut');
        },
        conflict: (addr) => {
          s.counters.add('arp.conflict');
          s.log.error(
            { address: formatIpv4(addr), mac: formatMac(this.heardFrom, this.heardMacOffset) },
            'the guest claims one of our IPv4 addresses: its traffic to that address will not reach us',
          );
        },
      },
      s.random,
    );
  }

  /** Asks who has `ip`: broadcast, or unicast to `mac` (a neighbour cache probe). */
  request(ip: number, mac: Uint8Array | undefined): void {
    this.send(ArpOp.REQUEST, this.s.config.ipv4.gateway, mac ?? MAC_BROADCAST, ip, mac ?? ZERO_MAC);
  }

  private send(op: number, senderIp: number, dstMac: Uint8Array, targetIp: number, targetMac: Uint8Array): void {
    const o = this.s.out;
    let n = emitEthernetHeader(o, 0, { dst: dstMac, src: this.s.config.mac, etherType: EtherType.ARP });
    n += emitArp(o, n, { operation: op, senderMac: this.s.config.mac, senderIp, targetMac, targetIp });
    this.s.transmit(n);
  }

  /** RFC 5227 §2.1.1/§2.4: someone else uses (or probes for) one of our addresses. */
  private checkConflict(arp: ArpPacket, frame: Uint8Array): void {
    this.heardFrom = frame;
    this.heardMacOffset = arp.senderMacOffset;
    this.claims.heard(arp.senderIp, arp.targetIp, arp.operation === ArpOp.REQUEST);
  }

  /** An ARP packet from the guest: answer requests for our addresses, learn the sender. */
  input(frame: Uint8Array, eth: EthernetFrame): void {
    const arp = this.arp.at(frame, eth.payloadOffset, eth.payloadLength);
    if (!arp.check()) return this.s.drop('arp.malformed');
    this.checkConflict(arp, frame);
    const spa = arp.senderIp;
    const sha = frame.subarray(arp.senderMacOffset, arp.senderMacOffset + 6);
    const onLink = spa !== 0 && ipv4InSubnet(spa, this.s.config.ipv4.network, this.s.config.ipv4.prefixLength) && !this.isOurs(spa);
    if (arp.operation !== ArpOp.REQUEST) {
      // A reply to our request confirms reachability (solicited, override).
      if (onLink) this.neighbors.confirm(spa, sha, this.s.now(), { solicited: true, override: true });
      return this.s.counters.add('arp.replyIn');
    }
    // RFC 826: merge the sender of a request (an unsolicited hint: RFC 4861 §7.2.3's rules).
    if (onLink) this.neighbors.learn(spa, sha, this.s.now());
    const tpa = arp.targetIp;
    if (!this.isOurs(tpa)) return this.s.counters.add('arp.notForUs');
    if (spa === tpa) return; // an announcement for our own address: nothing to answer
    const o = this.s.out;
    let n = emitEthernetHeader(o, 0, { dst: frame.subarray(eth.srcOffset, eth.srcOffset + 6), src: this.s.config.mac, etherType: EtherType.ARP });
    n += emitArp(o, n, {
      operation: ArpOp.REPLY,
      senderMac: this.s.config.mac,
      senderIp: tpa,
      targetMac: frame.subarray(arp.senderMacOffset, arp.senderMacOffset + 6),
      targetIp: spa,
    });
    this.s.counters.add('arp.replyOut');
    this.s.transmit(n);
  }
}
