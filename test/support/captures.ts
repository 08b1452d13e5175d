// Captured samples: frames and packets as real guests (and the gateway) put them on the wire, kept
// here once. The wire tests (test/wire/*.test.ts) parse them through every layer and emit them
// again byte for byte; the fuzz seed corpus (test/support/fuzz/corpus.ts) starts its mutations
// from them. Each comment says what the capture is and what it holds: a whole Ethernet frame, an IP
// packet without the Ethernet header, or only a protocol message.
import { hex } from './wire-helpers.js';

// ---- Ethernet and ARP ---------------------------------------------------------------------------

/**
 * A Linux guest (52:54:00:12:34:56, 10.0.2.15) asks who has 10.0.2.2; the NIC pads the frame to 60
 * (Ethernet frame).
 */
export const ARP_REQUEST_FRAME = hex(`
  ffff ffff ffff 5254 0012 3456 0806 0001 0800 0604 0001 5254 0012 3456 0a00 020f
  0000 0000 0000 0a00 0202 0000 0000 0000 0000 0000 0000 0000 0000 0000`);
/** The gateway's answer: 10.0.2.2 is-at 52:55:0a:00:02:02 (ARP body, no Ethernet header). */
export const ARP_REPLY = hex(`
  0001 0800 0604 0002 5255 0a00 0202 0a00 0202 5254 0012 3456 0a00 020f`);

// ---- IPv4, ICMPv4, IGMP -------------------------------------------------------------------------

/**
 * `ping -c1 10.0.2.2` from a Linux guest: 84-byte datagram, DF, TTL 64, ICMP echo request with a
 * 16-byte timeval and the bytes 0x10..0x37 (56 bytes of data) (Ethernet frame).
 */
export const ECHO_REQUEST_FRAME = hex(`
  5255 0a00 0202 5254 0012 3456 0800 4500 0054 6d2b 4000 4001 b56d 0a00 020f 0a00
  0202 0800 0f56 0a3f 0001 a1c4 2367 0000 0000 4e6b 0c00 0000 0000 1011 1213 1415
  1617 1819 1a1b 1c1d 1e1f 2021 2223 2425 2627 2829 2a2b 2c2d 2e2f 3031 3233 3435
  3637`);
/**
 * An echo request with 40 bytes of options: record route (3 slots, one used by 10.0.2.15), NOP,
 * timestamp with addresses (2 slots, one used), router alert (IPv4 packet).
 */
export const IPV4_WITH_OPTIONS = hex(`
  4f00 0044 4242 0000 4001 c087 0a00 020f 0a00 0202 070f 080a 0002 0f00 0000 0000
  0000 0001 4414 0d11 0a00 020f 0123 4567 0000 0000 0000 0000 9404 0000 0800 f7fd
  0001 0001`);
/**
 * 10.0.2.2 answers a traceroute probe (UDP to port 33434, TTL 1) with port unreachable, quoting the
 * probe's IP header and first 8 bytes (IPv4 packet).
 */
export const PORT_UNREACHABLE = hex(`
  45c0 0038 0000 0000 4001 61f5 0a00 0202 0a00 020f 0303 0a4c 0000 0000 4500 003c
  1234 0000 0111 8f6d 0a00 020f 0a00 0202 afc8 829a 0028 c025`);
/**
 * Linux joining 224.0.0.251 (mDNS): IGMPv3 report to 224.0.0.22, TTL 1, router alert, one
 * CHANGE_TO_EXCLUDE record with no sources (Ethernet frame).
 */
export const IGMPV3_REPORT_FRAME = hex(`
  0100 5e00 0016 5254 0012 3456 0800 46c0 0028 0000 4000 0102 f7ea 0a00 020f e000
  0016 9404 0000 2200 f902 0000 0001 0400 0000 e000 00fb`);
// IGMP messages (no IP header):
/** General query, v3: max resp 10 s, QRV 2, QQIC 125 s. */
export const IGMPV3_QUERY = hex(`1164 ec1e 0000 0000 027d 0000`);
/** Group-and-source-specific query for 232.1.1.1 with S set and sources 10.0.0.1, 10.0.0.2. */
export const IGMPV3_GSS_QUERY = hex(`118a e6dd e801 0101 0a90 0002 0a00 0001 0a00 0002`);
export const IGMPV2_QUERY = hex(`1164 ee9b 0000 0000`);
export const IGMPV2_REPORT = hex(`1600 fa04 efff fffa`);
export const IGMPV1_QUERY = hex(`1100 eeff 0000 0000`);

// ---- UDP and DHCP -------------------------------------------------------------------------------

/**
 * DHCPDISCOVER broadcast by busybox udhcpc 1.36.1 on 52:54:00:12:34:56: options message type,
 * client id (type 1 + MAC), max message size 576, parameter request list (subnet, router, DNS,
 * hostname, domain, broadcast, NTP), vendor class "udhcp 1.36.1", end; padded to 300 bytes
 * (Ethernet frame).
 */
export const DHCPDISCOVER_FRAME = hex(`
  ffff ffff ffff 5254 0012 3456 0800 4500 0148 0000 0000 4011 79a6 0000 0000 ffff
  ffff 0044 0043 0134 8aa6 0101 0600 3903 f326 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 5254 0012 3456 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000
  0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000 6382 5363 3501 013d 0701
  5254 0012 3456 3902 0240 3707 0103 060c 0f1c 2a3c 0c75 6468 6370 2031 2e33 362e
  31ff 0000 0000 0000 0000 0000 0000 0000 0000 0000 0000`);
/**
 * DHCPv6 SOLICIT from systemd-networkd, fe80::5054:ff:fe12:3456 port 546 -> ff02::1:2 port 547:
 * client id DUID-EN (enterprise 43793, 8-byte id), IA_NA IAID 7c3e1a2b with T1 = T2 = 0, elapsed
 * time 0, ORO (DNS, domain list, NTP, SOL_MAX_RT), rapid commit, client FQDN "guest" (IPv6 packet,
 * no Ethernet header).
 */
export const DHCPV6_SOLICIT_PACKET = hex(`
  6000 0000 0050 1101 fe80 0000 0000 0000 5054 00ff fe12 3456 ff02 0000 0000 0000
  0000 0000 0001 0002 0222 0223 0050 d88b 015a 1b2c 0001 000e 0002 0000 ab11 1f0e
  2d3c 4b5a 6978 0003 000c 7c3e 1a2b 0000 0000 0000 0000 0008 0002 0000 0006 0008
  0017 0018 0038 0052 000e 0000 0027 0008 0005 6775 6573 7400`);
/**
 * A traceroute probe: 10.0.2.15:45000 -> 10.0.2.2:33434, 32 bytes of data, TTL 1 (UDP header +
 * payload).
 */
export const PROBE_UDP = hex(`
  afc8 829a 0028 c025 4041 4243 4445 4647 4849 4a4b 4c4d 4e4f 5051 5253 5455 5657
  5859 5a5b 5c5d 5e5f`);

// ---- TCP ----------------------------------------------------------------------------------------

/**
 * A Linux SYN 10.0.2.15:45678 -> 93.184.216.34:80: window 64240, options MSS 1460, SACK permitted,
 * timestamps (TSval 0x9a3c01f2), NOP, window scale 7 (IPv4 packet).
 */
export const TCP_SYN_PACKET = hex(`
  4500 003c 3e1f 4000 4006 bab3 0a00 020f 5db8 d822 b26e 0050 6b8b 4567 0000 0000
  a002 faf0 0b46 0000 0204 05b4 0402 080a 9a3c 01f2 0000 0000 0103 0307`);
/**
 * A PSH/ACK over IPv6 (fd00::2:443 -> fe80::5054:ff:fe12:3456:50000) carrying "hello", with
 * NOP NOP timestamps and NOP NOP two SACK blocks (TCP header + payload).
 */
export const TCP6_SACK_SEGMENT = hex(`
  01bb c350 0102 0304 0a0b 0c0d d018 01f5 6cb8 0000 0101 080a 0000 03e8 0000 07d0
  0101 0512 0000 0064 0000 00c8 0000 012c 0000 0190 6865 6c6c 6f`);

// ---- IPv6, ICMPv6, NDP, MLD ---------------------------------------------------------------------

/**
 * `ping -c1 fd00::2` from the guest (fd00::5054:ff:fe12:3456 -> fd00::2), with a flow label and 16
 * bytes of data (IPv6 packet).
 */
export const ECHO6_PACKET = hex(`
  6005 a1b3 0018 3a40 fd00 0000 0000 0000 5054 00ff fe12 3456 fd00 0000 0000 0000
  0000 0000 0000 0002 8000 ad7c 1c2d 0003 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f`);
/**
 * Destination Options, then a Fragment header, then UDP: the first fragment (M=1, id deadbeef) of an
 * mDNS datagram (IPv6 packet).
 */
export const IPV6_DSTOPTS_FRAG = hex(`
  6000 0000 0030 3c40 fe80 0000 0000 0000 5054 00ff fe12 3456 ff02 0000 0000 0000
  0000 0000 0000 00fb 2c00 0104 0000 0000 1100 0001 dead beef 14e9 14e9 03e8 1234
  0001 0203 0405 0607 0809 0a0b 0c0d 0e0f 1011 1213 1415 1617`);
/**
 * NS from a Linux guest (fe80::5054:ff:fe12:3456) resolving its router fe80::2, with the source
 * link-layer address option (Ethernet frame).
 */
export const NS_FRAME = hex(`
  3333 ff00 0002 5254 0012 3456 86dd 6000 0000 0020 3aff fe80 0000 0000 0000 5054
  00ff fe12 3456 ff02 0000 0000 0000 0000 0001 ff00 0002 8700 7220 0000 0000 fe80
  0000 0000 0000 0000 0000 0000 0002 0101 5254 0012 3456`);
// NDP messages (ICMPv6 bodies, no IP header):
/** The router's solicited NA (R, S, O) with its TLLA 52:55:0a:00:02:02, fe80::2 -> guest. */
export const NDP_NA = hex(`
  8800 b808 e000 0000 fe80 0000 0000 0000 0000 0000 0000 0002 0201 5255 0a00 0202`);
/**
 * RA from fe80::2 to ff02::1: hop limit 64, lifetime 1800 s; fd00::/64 (L, A, valid 30 d,
 * preferred 7 d), MTU 1500, SLLA, RDNSS fd00::3 and DNSSL home.arpa (both 1800 s).
 */
export const NDP_RA = hex(`
  8600 d452 4000 0708 0000 0000 0000 0000 0304 40c0 0027 8d00 0009 3a80 0000 0000
  fd00 0000 0000 0000 0000 0000 0000 0000 0501 0000 0000 05dc 0101 5255 0a00 0202
  1903 0000 0000 0708 fd00 0000 0000 0000 0000 0000 0000 0003 1f03 0000 0000 0708
  0468 6f6d 6504 6172 7061 0000 0000 0000`);
/** RS from the guest to ff02::2 with SLLA. */
export const NDP_RS = hex(`8500 71b5 0000 0000 0101 5254 0012 3456`);
/** Redirect from fe80::2 telling the guest that fd00::99 is reached through fe80::3. */
export const NDP_REDIRECT = hex(`
  8900 995d 0000 0000 fe80 0000 0000 0000 0000 0000 0000 0003 fd00 0000 0000 0000
  0000 0000 0000 0099 0201 5255 0a00 0203`);
/**
 * Linux joining its solicited-node group ff02::1:ff12:3456: MLDv2 report to ff02::16, hop limit 1,
 * Hop-by-Hop router alert (value 0 = MLD), one CHANGE_TO_EXCLUDE record (Ethernet frame).
 */
export const MLDV2_REPORT_FRAME = hex(`
  3333 0000 0016 5254 0012 3456 86dd 6000 0000 0024 0001 fe80 0000 0000 0000 5054
  00ff fe12 3456 ff02 0000 0000 0000 0000 0000 0000 0016 3a00 0502 0000 0100 8f00
  b8e4 0000 0001 0400 0000 ff02 0000 0000 0000 0000 0001 ff12 3456`);
// MLD messages (ICMPv6 bodies, no IP header):
/** General MLDv2 query from fe80::2 to ff02::1: max response 10000 ms, QRV 2, QQIC 125. */
export const MLDV2_QUERY = hex(`8200 5695 2710 0000 0000 0000 0000 0000 0000 0000 0000 0000 027d 0000`);
/** MLDv1 report for ff02::fb sent to ff02::fb. */
export const MLDV1_REPORT = hex(`8300 fa73 0000 0000 ff02 0000 0000 0000 0000 0000 0000 00fb`);
