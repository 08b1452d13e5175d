import { VhostUserServer } from 'vhost-user-ts';
import { ArpResponder } from '/work/main/test/support/arp-responder.ts';
import { startGuest } from '/work/main/scripts/qemu.ts';
const dev = new ArpResponder({ ip: [10, 0, 2, 2], mac: new Uint8Array([0x02, 0, 0, 0, 0, 1]) });
const srv = new VhostUserServer(dev);
const sock = '/tmp/tryq/vu.sock';
srv.listen(sock);
const t0 = Date.now();
const g = await startGuest({ socketPath: sock, timeoutMs: 90000, mq: Number(process.env.MQ ?? 1), script: `
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
cat /sys/class/net/eth0/address
ping -c 2 -W 1 10.0.2.2 || true
ip neigh
ethtool -l eth0 2>/dev/null; ls /sys/class/net/eth0/queues
` });
const r = await g.exited;
console.log(r, Date.now() - t0, 'ms; frames', dev.received.length, 'arp', dev.arpRequests, dev.arpReplies);
console.log(g.output, g.stderr);
srv.close();
