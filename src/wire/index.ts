// The wire layer: zero-copy views, emitters and address helpers for every protocol vunet speaks.
// See each file's opening comment for the RFCs to read before editing it. Nothing here allocates per
// packet or imports node:*; names.ts (DNS name encoding used by the DHCP and NDP option writers)
// stays internal.

export * from './bytes.js';
export * from './checksum.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ip.js';
export * from './ipv4.js';
export * from './ipv6.js';
export * from './inany.js';
export * from './icmp.js';
export * from './icmpv4.js';
export * from './icmpv6.js';
export * from './ndp.js';
export * from './group-records.js';
export * from './igmp.js';
export * from './mld.js';
export * from './udp.js';
export * from './tcp.js';
export * from './tcp-cut.js';
export * from './dhcpv4.js';
export * from './dhcpv6.js';
