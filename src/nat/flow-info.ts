// What `vunet ctl flows` shows of one NAT flow: plain values, made only when asked (never on the
// data path).

/** One flow of the NAT as a person reads it. Addresses are 4 or 16 bytes (copies). */
export interface FlowInfo {
  proto: 'tcp' | 'udp' | 'icmp' | 'udp-forward';
  family: 4 | 6;
  /** Who opened it: the guest (outbound) or a host client through a port forward (inbound). */
  direction: 'outbound' | 'inbound';
  /** The guest's end (ICMP: the echo identifier in place of the port). */
  guest: Uint8Array;
  guestPort: number;
  /** The far end as the guest sees it (for a forwarded client, maybe the gateway). */
  remote: Uint8Array;
  remotePort: number;
  /** The host socket's peer: where an outbound flow's socket sends (the gateway maps to
   *  loopback), or a forwarded client; undefined where the flow does not record it. */
  host?: Uint8Array;
  hostPort?: number;
  /** TCP: the endpoint's state name (CONNECTING while the host connect runs); else 'active'. */
  state: string;
  /** Payload bytes each way, where the flow counts them (TCP: from its sequence numbers, so
   *  modulo 2^32). */
  bytesToGuest?: number;
  bytesFromGuest?: number;
  /** ms since the flow opened, when known, and since it last carried anything. */
  ageMs?: number;
  idleMs?: number;
}
