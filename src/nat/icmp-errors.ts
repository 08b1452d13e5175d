// What the host kernel reports on a socket's error queue (IP_RECVERR / IPV6_RECVERR, struct
// sock_extended_err) becomes the ICMP or ICMPv6 error a real network would have given the guest.
// Read RFC 792, RFC 1191 (fragmentation needed with the MTU), RFC 4443 §3 and Linux's ip(7)/ipv6(7)
// IP_RECVERR before editing.
//
//   origin ICMP / ICMP6  the error came from the network: type and code pass through, sourced from
//                        the reporting hop (the offender).
//   origin LOCAL         the host itself failed (could not resolve or route the next hop, message
//                        too big for the path): the error comes from our gateway address, as the
//                        router the guest sees.

/** SO_EE_ORIGIN_* */
export const ErrOrigin = { NONE: 0, LOCAL: 1, ICMP: 2, ICMP6: 3 } as const;

/** Linux errno values the local origin reports. */
export const Errno = {
  EPERM: 1,
  EACCES: 13,
  EMSGSIZE: 90,
  ENETUNREACH: 101,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
} as const;

/** One error-queue entry, as the host socket layer reads it. */
export interface HostError {
  origin: number;
  type: number;
  code: number;
  errno: number;
  /** ee_info: the MTU for fragmentation needed / packet too big, the pointer for parameter problem. */
  info: number;
  /** The address of the hop that reported it (first 4 bytes for IPv4). */
  offender: Uint8Array;
  offenderValid: boolean;
}

/** The error to send the guest. */
export interface GuestError {
  type: number;
  code: number;
  /** The 4 bytes after the ICMP checksum (MTU, pointer; 0 otherwise). */
  rest: number;
  /** Source of the error: the reporting hop, or our gateway address. */
  from: 'offender' | 'gateway';
}

// ICMPv4 (RFC 792, RFC 1812 §5.2.7.1)
const V4 = { UNREACH: 3, TIME_EXCEEDED: 11, PARAM_PROBLEM: 12 } as const;
const V4_NET = 0;
const V4_HOST = 1;
const V4_PORT = 3;
const V4_FRAG_NEEDED = 4;
const V4_ADMIN = 13;
// ICMPv6 (RFC 4443 §3)
const V6 = { UNREACH: 1, PACKET_TOO_BIG: 2, TIME_EXCEEDED: 3, PARAM_PROBLEM: 4 } as const;
const V6_NO_ROUTE = 0;
const V6_ADMIN = 1;
const V6_ADDRESS = 3;
const V6_PORT = 4;

/**
 * Maps an error-queue entry to the guest's error, or undefined when it has no equivalent (an
 * origin we do not know, an ICMP type that is not an error).
 */
export function translateError(family: 4 | 6, e: HostError): GuestError | undefined {
  if (e.origin === ErrOrigin.ICMP && family === 4) {
    switch (e.type) {
      case V4.UNREACH:
        // Fragmentation needed carries the next-hop MTU in the low 16 bits (RFC 1191).
        return { type: V4.UNREACH, code: e.code, rest: e.code === V4_FRAG_NEEDED ? e.info & 0xffff : 0, from: hop(e) };
      case V4.TIME_EXCEEDED:
        return { type: V4.TIME_EXCEEDED, code: e.code, rest: 0, from: hop(e) };
      case V4.PARAM_PROBLEM:
        // The pointer is the octet of the original header: unchanged, since we rebuild it as sent.
        return { type: V4.PARAM_PROBLEM, code: e.code, rest: ((e.info & 0xff) << 24) >>> 0, from: hop(e) };
      default:
        return undefined;
    }
  }
  if (e.origin === ErrOrigin.ICMP6 && family === 6) {
    switch (e.type) {
      case V6.UNREACH:
      case V6.TIME_EXCEEDED:
        return { type: e.type, code: e.code, rest: 0, from: hop(e) };
      case V6.PACKET_TOO_BIG:
        return { type: V6.PACKET_TOO_BIG, code: 0, rest: e.info >>> 0, from: hop(e) };
      case V6.PARAM_PROBLEM:
        return { type: V6.PARAM_PROBLEM, code: e.code, rest: e.info >>> 0, from: hop(e) };
      default:
        return undefined;
    }
  }
  if (e.origin === ErrOrigin.LOCAL) return localError(family, e);
  return undefined;
}

/** An error-queue-like entry for a send the host refused at once with `errno`. */
export function refusedSend(errno: number): HostError {
  return { origin: ErrOrigin.LOCAL, type: 0, code: 0, errno, info: 0, offender: NO_OFFENDER, offenderValid: false };
}

const NO_OFFENDER = new Uint8Array(16);

/** The host could not send it: answer as the router the guest sees. */
function localError(family: 4 | 6, e: HostError): GuestError | undefined {
  const v4 = family === 4;
  switch (e.errno) {
    case Errno.EHOSTUNREACH: // the next hop did not answer ARP/NDP
      return v4 ? gw(V4.UNREACH, V4_HOST) : gw(V6.UNREACH, V6_ADDRESS);
    case Errno.ENETUNREACH: // no route
      return v4 ? gw(V4.UNREACH, V4_NET) : gw(V6.UNREACH, V6_NO_ROUTE);
    case Errno.ECONNREFUSED:
      return v4 ? gw(V4.UNREACH, V4_PORT) : gw(V6.UNREACH, V6_PORT);
    case Errno.EMSGSIZE: // larger than the path MTU the host knows (info)
      return v4 ? { ...gw(V4.UNREACH, V4_FRAG_NEEDED), rest: e.info & 0xffff } : { ...gw(V6.PACKET_TOO_BIG, 0), rest: e.info >>> 0 };
    case Errno.EACCES:
    case Errno.EPERM: // a host firewall refused it
      return v4 ? gw(V4.UNREACH, V4_ADMIN) : gw(V6.UNREACH, V6_ADMIN);
    default:
      return undefined;
  }
}

function gw(type: number, code: number): GuestError {
  return { type, code, rest: 0, from: 'gateway' };
}

/** Errors from the network come from the reporting hop; without one, from the gateway. */
function hop(e: HostError): 'offender' | 'gateway' {
  return e.offenderValid ? 'offender' : 'gateway';
}
