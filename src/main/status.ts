// The short summary for a person (`vunet ctl status`, SIGUSR1): who the guest is, how long vunet
// has run, the link, how pings leave, the forwards, the flows, and only the drop counters that are
// not zero, each with what it means. The structured form goes to the log and to `--json`; the text
// form is what `vunet ctl status` prints.
import { compareNames } from '../iface/counters.js';

/** What each drop counter means (the stack's counters by name, then the NAT's and the device's). */
const DROP_MEANINGS: Readonly<Record<string, string>> = {
  'eth.short': 'guest frames shorter than an Ethernet header',
  'eth.notOurs': 'guest frames to a MAC that is neither ours nor a group we are in',
  'eth.groupSource': 'guest frames with a multicast source MAC',
  'eth.unknownType': 'guest frames of an EtherType vunet does not speak',
  'arp.malformed': 'malformed ARP packets',
  'arp.notForUs': 'ARP requests for addresses that are not ours',
  'ipv4.truncated': 'IPv4 packets shorter than their header',
  'ipv4.badVersion': 'IPv4 packets whose version field is not 4',
  'ipv4.badHeaderLength': 'IPv4 packets with an impossible header length',
  'ipv4.badTotalLength': 'IPv4 packets whose total length disagrees with the frame',
  'ipv4.malformed': 'malformed IPv4 packets',
  'ipv4.badChecksum': 'IPv4 headers with a bad checksum',
  'ipv4.badOption': 'IPv4 packets with a malformed option (answered with parameter problem)',
  'ipv4.cannotFragment': 'IPv4 datagrams too big for the link with DF set',
  'ipv4.groupNotJoined': 'IPv4 multicast to groups we are not in',
  'ipv4.noRouteToGuest': 'IPv4 packets for the guest to an address not on its network',
  'ipv4.notForUs': 'IPv4 packets neither for us nor to be routed',
  'ipv4.unknownProtocol': 'IPv4 packets of a protocol vunet does not carry',
  'ipv4.unresolved': 'IPv4 packets for the guest dropped while its MAC was unknown',
  'ipv4.ttlExpired': 'guest IPv4 packets whose TTL ran out at the gateway (traceroute)',
  'ipv4.reassemblyTimeout': 'IPv4 fragments that never made a whole datagram',
  'ipv6.badExtensionHeaders': 'IPv6 packets with malformed extension headers',
  'ipv6.badOption': 'IPv6 packets with a malformed option',
  'ipv6.cannotFragment': 'IPv6 packets too big for the link',
  'ipv6.disabled': 'IPv6 packets while IPv6 is off (--no-ipv6)',
  'ipv6.groupNotJoined': 'IPv6 multicast to groups we are not in',
  'ipv6.malformed': 'malformed IPv6 packets',
  'ipv6.multicastSource': 'IPv6 packets with a multicast source',
  'ipv6.noNeighbor': 'IPv6 packets for the guest dropped while its MAC was unknown',
  'ipv6.noRouteToGuest': 'IPv6 packets for the guest to an address not on its prefix',
  'ipv6.notForUs': 'IPv6 packets neither for us nor to be routed',
  'ipv6.tentative': 'IPv6 packets to one of our addresses still under duplicate address detection',
  'ipv6.unresolved': 'IPv6 packets for the guest dropped while its MAC was unknown',
  'ipv6.hopLimitExpired': 'guest IPv6 packets whose hop limit ran out at the gateway (traceroute)',
  'ipv6.reassemblyTimeout': 'IPv6 fragments that never made a whole packet',
  'icmp4.badChecksum': 'ICMPv4 messages with a bad checksum',
  'icmp4.short': 'truncated ICMPv4 messages',
  'icmp4.echoToGroup': 'pings to a multicast or broadcast address (not answered)',
  'icmp4.rateLimited': 'ICMPv4 errors not sent: over the error rate',
  'icmp6.badChecksum': 'ICMPv6 messages with a bad checksum',
  'icmp6.short': 'truncated ICMPv6 messages',
  'icmp6.echoFromUnspecified': 'IPv6 pings from the unspecified address',
  'icmp6.echoToUnusableAddress': 'IPv6 pings to an address that may not answer',
  'igmp.badChecksum': 'IGMP messages with a bad checksum',
  'igmp.badGroup': 'IGMP messages naming an invalid group',
  'igmp.badSource': 'IGMP messages from an invalid source',
  'igmp.badTtl': 'IGMP messages whose TTL is not 1',
  'igmp.malformed': 'malformed IGMP messages',
  'igmp.noRouterAlert': 'IGMP messages without the router alert option',
  'igmp.unknownType': 'IGMP messages of an unknown type',
  'mld.badGroup': 'MLD messages naming an invalid group',
  'mld.badHopLimit': 'MLD messages whose hop limit is not 1',
  'mld.badSource': 'MLD messages from a source that is not link-local',
  'mld.malformed': 'malformed MLD messages',
  'mld.noRouterAlert': 'MLD messages without the router alert option',
  'ndp.badNa': 'invalid neighbour advertisements',
  'ndp.badNs': 'invalid neighbour solicitations',
  'ndp.nsNotForUs': 'neighbour solicitations for addresses that are not ours',
  'tcp4.badChecksum': 'TCP segments over IPv4 with a bad checksum',
  'tcp4.broadcast': 'TCP segments to a broadcast or multicast address',
  'tcp4.malformed': 'malformed TCP segments over IPv4',
  'tcp6.badChecksum': 'TCP segments over IPv6 with a bad checksum',
  'tcp6.malformed': 'malformed TCP segments over IPv6',
  'tcp6.multicast': 'TCP segments to an IPv6 multicast address',
  'tcp6.unserved': 'TCP segments to one of our IPv6 addresses that serves nothing',
  'udp4.badChecksum': 'UDP datagrams over IPv4 with a bad checksum',
  'udp4.malformed': 'malformed UDP datagrams over IPv4',
  'udp4.noPort': 'UDP datagrams to a port of ours nothing serves (port unreachable)',
  'udp4.outTooBig': 'UDP datagrams for the guest too big to send',
  'udp6.badChecksum': 'UDP datagrams over IPv6 with a bad checksum',
  'udp6.malformed': 'malformed UDP datagrams over IPv6',
  'udp6.noPort': 'UDP datagrams to a port of ours nothing serves (port unreachable)',
  'udp6.outTooBig': 'UDP datagrams for the guest too big to send',
  'link.dropped': 'frames for the guest the link refused (no receive buffers, backlog full)',
  'link.noRoom': 'frames for the guest that found no room in its receive buffers',
  'link.payloadShort': 'guest payloads that could not be read back from guest memory',
  'link.segmentedUnsent': 'segments of a large frame for the guest left unsent',
  'nat.unsupported': 'guest packets beyond the gateway of a protocol the NAT does not carry',
  'device.txDropped': 'guest frames refused by the device (bad header, GSO not offered, bad length)',
  'device.txGsoBad': 'guest GSO frames that disagreed with what was negotiated',
  'device.rxDropped': 'frames for the guest dropped: backlog full or larger than its buffers',
  'device.txFailed': 'guest frames whose handling hit a bug (dropped; vunet went on)',
  'device.batchesFailed': 'batches of frames whose handling hit a bug outside any one frame (the rest of the batch lost; the guest stayed connected)',
  failures: 'internal errors caught at a batch boundary (each cost one event; see the log)',
  'tcp.synsDropped': 'guest TCP connection attempts over the rate or the per-destination bound',
  'tcp.tableFull': 'guest TCP connections refused: the flow table was full',
  'tcp.noMemory': 'TCP connections refused: the memory budget was spent (--max-memory)',
  'tcp.fenced': 'guest TCP connections to fenced addresses (--deny, --deny-host, loopback)',
  'tcp.acceptsRefused': 'forwarded connections refused (rate, table share, guest address unknown)',
  'tcp.acceptsEvicted': 'forwarded connections given up while waiting for the guest',
  'tcp.connectingEvicted': 'guest TCP connections given up while connecting, for newer ones',
  'udp.openFailed': 'guest UDP flows whose host socket could not be opened',
  'udp.tooBig': 'guest UDP datagrams too big for the host socket',
  'echo.unanswerable': 'guest pings that could not leave (no ICMP socket, or fenced)',
  'dns.dropped': 'DNS queries dropped (too many pending, or malformed)',
  'udpForward.dropped': 'forwarded UDP datagrams dropped (guest address unknown, too big, send failed)',
  'fence.dropped': 'guest packets to fenced addresses',
};

/** Names that count drops though not listed above: the stack's counters of a malformed message. */
const DROP_NAME = /\.(bad[A-Z]|malformed|short|truncated|not[A-Z]|no[A-Z]|cannot|unknown|unresolved|outTooBig)/;

/** A drop counter that is not zero, with what it means. */
export interface DropLine {
  name: string;
  count: number;
  meaning: string;
}

/** The non-zero drop counters among `counters` (flat names), sorted by name. */
export function nonZeroDrops(counters: Readonly<Record<string, number>>): DropLine[] {
  const out: DropLine[] = [];
  for (const [name, count] of Object.entries(counters)) {
    if (count === 0) continue;
    const meaning = DROP_MEANINGS[name] ?? (DROP_NAME.test(name) ? `dropped: ${name}` : undefined);
    if (meaning !== undefined) out.push({ name, count, meaning });
  }
  return out.sort((a, b) => compareNames(a.name, b.name));
}

/** The summary's structured form (the log line, `vunet ctl status --json`). */
export interface StatusSummary {
  version: string;
  uptimeSec: number;
  /** A frontend is connected, and whether the guest's link is up (its driver started the queues). */
  attached: boolean;
  linkUp: boolean;
  guest: { mac: string | null; ipv4: string[]; ipv6: string[] };
  /** How guest pings leave: ping sockets, raw sockets, or not at all. */
  icmp: 'ping' | 'raw' | 'none' | 'fake';
  forwards: string[];
  flows: { tcp: number; udp: number; icmp: number; udpForward: number; tcpStates: Record<string, number> };
  drops: DropLine[];
}

/** The text `vunet ctl status` prints. */
export function formatSummary(s: StatusSummary): string {
  const lines: string[] = [];
  lines.push(`vunet ${s.version}, up ${duration(s.uptimeSec)}`);
  lines.push(`guest: ${s.attached ? `attached, link ${s.linkUp ? 'up' : 'down'}` : 'not attached'}`);
  lines.push(`  MAC ${s.guest.mac ?? 'not seen yet'}`);
  if (s.guest.ipv4.length > 0) lines.push(`  IPv4 ${s.guest.ipv4.join(', ')}`);
  if (s.guest.ipv6.length > 0) lines.push(`  IPv6 ${s.guest.ipv6.join(', ')}`);
  const icmp = {
    ping: 'ping sockets',
    raw: 'raw sockets (CAP_NET_RAW)',
    none: 'none: pings beyond the gateway go unanswered',
    fake: 'a test host',
  }[s.icmp];
  lines.push(`ICMP: ${icmp}`);
  lines.push(s.forwards.length === 0 ? 'forwards: none' : `forwards:`);
  for (const f of s.forwards) lines.push(`  ${f}`);
  const states = Object.entries(s.flows.tcpStates)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  lines.push(
    `flows: TCP ${s.flows.tcp}${states !== '' ? ` (${states})` : ''}, UDP ${s.flows.udp}, ICMP ${s.flows.icmp}, forwarded UDP sessions ${s.flows.udpForward}`,
  );
  if (s.drops.length === 0) lines.push('drops: none');
  else {
    lines.push('drops:');
    const width = Math.max(...s.drops.map((d) => `${d.name} ${d.count}`.length));
    for (const d of s.drops) lines.push(`  ${`${d.name} ${d.count}`.padEnd(width)}  ${d.meaning}`);
  }
  return `${lines.join('\n')}\n`;
}

function duration(sec: number): string {
  const d = Math.floor(sec / 86400);
  const h = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = Math.floor(sec % 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}

/** One forward as `vunet ctl forwards` lists it. */
export interface ForwardInfo {
  proto: 'tcp' | 'udp';
  /** The spec that makes it again (`-t`/`-u` syntax, one port). */
  spec: string;
  /** Where its host sockets listen. */
  listen: string[];
  hostPort: number;
  guestPort: number;
}

/** One DHCP lease. */
export interface LeaseInfo {
  family: 4 | 6;
  mac: string;
  ip: string;
  state: string;
  expiresInSec: number;
  hostname?: string;
}

/** One neighbour cache entry (ARP or NDP). */
export interface NeighbourLine {
  family: 4 | 6;
  ip: string;
  /** RFC 4861's state name (ARP takes the same states). */
  state: string;
  mac: string | null;
  /** When the state's timer fires, ms from now (null: no timer). */
  timerInMs: number | null;
}

/** One NAT flow, addresses as text (`vunet ctl flows`). */
export interface FlowLine {
  proto: string;
  direction: 'outbound' | 'inbound';
  state: string;
  /** The guest's end and the far end as the guest sees it, `addr:port` ([v6]:port; ICMP: the
   *  address alone, and the echo identifier in `ident`). */
  guest: string;
  ident?: number;
  remote: string;
  /** The host socket's peer, where known. */
  host?: string;
  bytesToGuest?: number;
  bytesFromGuest?: number;
  ageSec?: number;
  idleSec?: number;
}
