// The stack's configuration: our addresses on the guest link and what we hand out. Defaults match
// slirp (QEMU `-netdev user`) so guests configured for it work unchanged.
//
// IPv4 addresses are uint32 numbers; IPv6 addresses are 16-byte arrays.

export interface Ipv4Config {
  /** Network address (host bits zero). */
  network: number;
  prefixLength: number;
  /** Our address: the guest's router (slirp: .2). */
  gateway: number;
  /** Our DNS forwarder address (slirp: .3). */
  dns: number;
  /** First address the DHCP server leases (slirp: .15). */
  dhcpFirst: number;
  /** How many addresses the DHCP pool has, from dhcpFirst. */
  dhcpCount: number;
}

export interface Ipv6Config {
  /** The /64 prefix advertised for SLAAC (slirp: fec0::). */
  prefix: Uint8Array;
  prefixLength: number;
  /** Our global address in the prefix (slirp: fec0::2). */
  gateway: Uint8Array;
  /** DNS address in the prefix (slirp: fec0::3). */
  dns: Uint8Array;
}

export interface StackConfig {
  /** Our MAC on the guest link (slirp's 52:55:0a:00:02:02). */
  mac: Uint8Array;
  /** The guest's MAC when given (--guest-mac); otherwise learnt from its frames. */
  guestMac: Uint8Array | undefined;
  /** Link MTU advertised to the guest (DHCP option 26, RA MTU option). */
  mtu: number;
  ipv4: Ipv4Config;
  ipv6: Ipv6Config | undefined;
  /** Domain search list handed out (DHCP option 119, RA DNSSL, DHCPv6 option 24). */
  searchDomains: string[];
  /** DHCPv4 lease time, seconds. */
  leaseTime: number;
}

export const DEFAULT_MTU = 65520;
export const MIN_MTU = 1280; // IPv6's minimum; we keep one MTU for both families.
export const MAX_MTU = 65520;

const v4 = (a: number, b: number, c: number, d: number): number => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

export function ipv6FromWords(...words: number[]): Uint8Array {
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** Derives .2 (gateway), .3 (DNS) and .15 (first lease) from a network, as slirp does. */
export function ipv4ConfigFor(network: number, prefixLength: number): Ipv4Config {
  const size = 2 ** (32 - prefixLength);
  if (prefixLength > 28) throw new RangeError('IPv4 prefix must be /28 or shorter (room for gateway, DNS and leases)');
  const net = (network & (prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0)) >>> 0;
  const first = size >= 32 ? 15 : 4;
  return {
    network: net,
    prefixLength,
    gateway: (net + 2) >>> 0,
    dns: (net + 3) >>> 0,
    dhcpFirst: (net + first) >>> 0,
    // Up to the address before broadcast, at most 256 leases (every table has a bound).
    dhcpCount: Math.min(size - first - 1, 256),
  };
}

/** Gateway ::2 and DNS ::3 in a /64, as slirp does. */
export function ipv6ConfigFor(prefix: Uint8Array): Ipv6Config {
  const p = prefix.slice(0, 16);
  p.fill(0, 8);
  const gw = p.slice();
  gw[15] = 2;
  const dns = p.slice();
  dns[15] = 3;
  return { prefix: p, prefixLength: 64, gateway: gw, dns };
}

export function defaultConfig(): StackConfig {
  return {
    mac: Uint8Array.of(0x52, 0x55, 0x0a, 0x00, 0x02, 0x02),
    guestMac: undefined,
    mtu: DEFAULT_MTU,
    ipv4: ipv4ConfigFor(v4(10, 0, 2, 0), 24),
    ipv6: ipv6ConfigFor(ipv6FromWords(0xfec0)),
    searchDomains: [],
    leaseTime: 86400,
  };
}
