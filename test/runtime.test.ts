// The assembled runtime without QEMU: the test frontend plays the guest's virtio driver. Link-up
// claims our addresses, DHCPv4 and DHCPv6 answer through the rings, and the capture holds both
// directions.
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  ArpPacket,
  DhcpPacket,
  Dhcpv6Message,
  Dhcpv6MessageType,
  Dhcpv6Option,
  EtherType,
  IpProtocol,
  Ipv4Packet,
  Ipv6Packet,
  dhcpv6PutDuidLl,
  dhcpv6PutIaNa,
  dhcpv6PutU16,
  emitDhcpv6Header,
  emitEthernetHeader,
  emitIpv6Header,
  emitUdpV6,
  parseIpv6,
} from '../src/wire/index.js';
import { GUEST_MAC, dhcpDiscover } from './support/packets.js';
import { startHarness } from './support/vunet-harness.js';

const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const ALL_DHCP = parseIpv6('ff02::1:2')!;

function dhcpv6Solicit(): Uint8Array {
  const f = new Uint8Array(14 + 40 + 8 + 200);
  const p = 62;
  let o = emitDhcpv6Header(f, p, Dhcpv6MessageType.SOLICIT, 0x00abcd) + p;
  o = dhcpv6PutDuidLl(f, o, f.length, Dhcpv6Option.CLIENTID, GUEST_MAC);
  o = dhcpv6PutIaNa(f, o, f.length, { iaid: 1, t1: 0, t2: 0, addresses: [] });
  o = dhcpv6PutU16(f, o, f.length, Dhcpv6Option.ELAPSED_TIME, 0);
  const len = o - p;
  emitUdpV6(f, 54, { srcPort: 546, dstPort: 547, payloadLength: len }, GUEST_LL, ALL_DHCP);
  emitIpv6Header(f, 14, { src: GUEST_LL, dst: ALL_DHCP, nextHeader: IpProtocol.UDP, hopLimit: 1, payloadLength: 8 + len });
  emitEthernetHeader(f, 0, { dst: Uint8Array.of(0x33, 0x33, 0, 1, 0, 2), src: GUEST_MAC, etherType: EtherType.IPV6 });
  return f.slice(0, 62 + len);
}

t.test('link-up, DHCPv4 and DHCPv6 through the rings, and the capture', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-runtime-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pcap = join(dir, 'cap.pcap');
  const h = await startHarness({}, pcap);
  let closed = false;
  t.teardown(async () => {
    if (!closed) await h.close();
  });

  // Link-up: ARP probes for our addresses (after a random wait of up to 1 s) and an MLD report.
  const early: Uint8Array[] = [];
  for (let i = 0; i < 40 && !early.some((f) => f[12] === 0x08 && f[13] === 0x06); i++) early.push(...(await h.receive(1, 100)));
  const arp = early.find((f) => f[12] === 0x08 && f[13] === 0x06);
  t.ok(arp, 'an ARP probe after link-up');
  const probe = new ArpPacket().at(arp!, 14, arp!.length - 14);
  t.ok(probe.check() && probe.senderIp === 0, 'RFC 5227 probe (sender 0.0.0.0)');
  t.ok(
    early.some((f) => f[0] === 0x33 && f[1] === 0x33 && f[12] === 0x86 && f[13] === 0xdd),
    'an IPv6 multicast frame (MLD report)',
  );

  h.send(dhcpDiscover());
  const offer = (await h.receive(1)).find((f) => f[12] === 0x08 && f[13] === 0x00 && f[23] === IpProtocol.UDP);
  t.ok(offer, 'a DHCP reply');
  const ip = new Ipv4Packet().at(offer!, 14, offer!.length - 14);
  t.equal(ip.dst, 0xffffffff, 'broadcast (the client set the broadcast bit)');
  const dhcp = new DhcpPacket().at(offer!, ip.payloadOffset + 8, ip.payloadLength - 8);
  t.equal(dhcp.yiaddr, 0x0a00020f, 'offers 10.0.2.15');

  h.send(dhcpv6Solicit());
  const adv = (await h.receive(1)).find((f) => f[12] === 0x86 && f[13] === 0xdd && f[20] === IpProtocol.UDP);
  t.ok(adv, 'a DHCPv6 answer');
  const ip6 = new Ipv6Packet().at(adv!, 14, adv!.length - 14);
  t.same(adv!.subarray(ip6.dstOffset, ip6.dstOffset + 16), GUEST_LL, 'to the client link-local address');
  const msg = new Dhcpv6Message().at(adv!, 62, adv!.length - 62);
  t.equal(msg.msgType, Dhcpv6MessageType.ADVERTISE);
  t.equal(msg.transactionId, 0x00abcd);

  const stats = h.vunet.status();
  t.ok(stats.connected, 'status reports the connection');
  await h.close();
  closed = true;
  const file = readFileSync(pcap);
  t.equal(file.readUInt32LE(0), 0xa1b2c3d4, 'pcap magic');
  let records = 0;
  let mld = 0;
  for (let o = 24; o + 16 <= file.length;) {
    const incl = file.readUInt32LE(o + 8);
    const frame = file.subarray(o + 16, o + 16 + incl);
    if (frame[12] === 0x86 && frame[13] === 0xdd && frame[14 + 40 + 8] === 143) mld++;
    records++;
    o += 16 + incl;
  }
  t.ok(records >= 6, `capture holds both directions (${records} frames)`);
  t.ok(mld >= 1, 'our MLD report is in the capture');
});
