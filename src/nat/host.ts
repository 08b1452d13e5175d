// The host side of the NAT as the NAT sees it: sockets behind small interfaces, so the NAT runs in
// tests against a fake host and in production against the native sockets (src/main/host-net.ts).
// Nothing here imports node:*.
import type { HostError } from './icmp-errors.js';

/** A host ICMP echo socket (an unprivileged ping socket, or a raw socket), one per guest flow. */
export interface EchoSocket {
  /** Sends an echo request to `dst` (4 or 16 bytes) with this hop limit; 0 or -errno. */
  send(dst: Uint8Array, seq: number, data: Uint8Array, ttl: number): number;
  close(): void;
}

export interface EchoSocketEvents {
  /** An echo reply from `from` (views valid during the call). `ttl` is -1 when unknown. */
  reply(from: Uint8Array, seq: number, data: Uint8Array, ttl: number): void;
  /** An error-queue entry about the request with this sequence number and data. */
  error(error: HostError, seq: number, data: Uint8Array): void;
}

export interface HostNet {
  /** Which kind of echo socket the host grants, once probed: for logs and status. */
  readonly echoMode: 'ping' | 'raw' | 'none';
  /** Opens an echo socket; throws an Error with `code` when the host permits none. */
  openEcho(family: 4 | 6, events: EchoSocketEvents): EchoSocket;
}

/** A connected host UDP socket, one per guest flow. */
export interface UdpSocket {
  /** Sends a datagram to the connected peer with this hop limit; 0 or -errno. */
  send(data: Uint8Array, ttl: number): number;
  close(): void;
}

export interface UdpSocketEvents {
  /** A datagram from the peer (a view valid during the call). */
  datagram(data: Uint8Array): void;
  /** An error-queue entry about a datagram we sent (its payload, as far as it was quoted). */
  error(error: HostError, data: Uint8Array): void;
}

export interface HostUdp {
  /** Opens a UDP socket connected to `dst`:`port`; throws an Error with `code` on failure. */
  openUdp(family: 4 | 6, dst: Uint8Array, port: number, events: UdpSocketEvents): UdpSocket;
}
