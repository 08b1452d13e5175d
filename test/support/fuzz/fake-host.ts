// Host sockets for a fuzz target that may not use real ones (not root: no network namespace to
// keep the NAT's packets on this machine). Nothing here touches the network. They answer the way
// an empty network would, asynchronously as the kernel does, so the NAT's paths still run:
// echo requests time out, UDP datagrams get nothing back (port 7 excepted: an echo, so answers
// flow), TCP connects are refused on a later tick, listeners and bound sockets never hear from
// anybody.
import type {
  BoundUdpEvents,
  BoundUdpSocket,
  EchoSocket,
  EchoSocketEvents,
  HostNet,
  HostTcp,
  HostUdp,
  HostUdpListen,
  TcpListener,
  TcpSocket,
  TcpSocketEvents,
  UdpSocket,
  UdpSocketEvents,
} from '../../../src/nat/host.js';

const ECONNREFUSED = 111;
const EAGAIN = 11;

export class FakeHostNet implements HostNet {
  readonly echoMode = 'ping' as const;
  openEcho(_family: 4 | 6, _events: EchoSocketEvents): EchoSocket {
    return { send: () => 0, close: () => undefined };
  }
}

export class FakeHostUdp implements HostUdp {
  openUdp(_family: 4 | 6, _dst: Uint8Array, port: number, events: UdpSocketEvents): UdpSocket {
    let open = true;
    return {
      send: (data) => {
        if (port === 7) {
          const copy = data.slice();
          setImmediate(() => {
            if (open) events.datagram(copy);
          });
        }
        return 0;
      },
      close: () => void (open = false),
    };
  }
}

export class FakeHostTcp implements HostTcp {
  connectTcp(_family: 4 | 6, _dst: Uint8Array, _port: number, _ttl: number, events: TcpSocketEvents): TcpSocket {
    let open = true;
    setImmediate(() => {
      if (open) events.connectFailed(ECONNREFUSED, undefined);
    });
    return {
      read: () => -EAGAIN,
      write: () => -EAGAIN,
      shutdownWrite: () => undefined,
      watch: () => undefined,
      close: () => void (open = false),
    };
  }
  listenTcp(): TcpListener {
    return { close: () => undefined };
  }
}

export class FakeHostUdpListen implements HostUdpListen {
  bindUdp(_family: 4 | 6, _addr: Uint8Array | null, _port: number, _events: BoundUdpEvents): BoundUdpSocket {
    return { sendTo: (data) => data.length, close: () => undefined };
  }
}
