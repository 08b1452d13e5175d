// The privilege policy (src/main/privileges.ts): --runas parsing and resolution, the CAP_NET_RAW
// decision from ping_group_range, and the whole thing end to end — the real vunet CLI started as
// root, then /proc/PID/status read: not root, CAP_NET_RAW only when ping sockets cannot serve
// the guest's pings, no_new_privs, seccomp; exec refused; still serving a frontend on its socket;
// SIGTERM exits 0 and removes the socket. Nothing here sends a packet off this machine.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { UsageError, parseArgs } from '../../src/main/options.js';
import {
  PrivilegeError,
  decideEcho,
  effectiveCapabilities,
  parsePingGroupRange,
  pingSocketsAllowed,
  planPrivileges,
  resolveRunAs,
  whyCannotRemove,
} from '../../src/main/privileges.js';
import { ArpOp, ArpPacket } from '../../src/wire/index.js';
import { canUseNetns, spawnVunet } from '../support/netns.js';
import { GUEST_IP, GW_IP, arpRequest, echoRequest } from '../support/packets.js';
import { connectGuest } from '../support/vunet-harness.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'vunet.js');
const SOCK = ['--socket', '/tmp/x.sock'];

const PASSWD = [
  'root:x:0:0:root:/root:/bin/bash',
  'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
  'qemu:x:107:113::/var/lib/qemu:/usr/sbin/nologin',
  'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'kvm:x:104:qemu', 'qemu:x:113:', 'nogroup:x:65534:', ''].join('\n');

t.test('--runas syntax (options)', async (t) => {
  t.equal(parseArgs(SOCK).runAs, undefined, 'absent: undefined (nobody at start)');
  t.equal(parseArgs(SOCK).sandbox, true, 'sandbox on by default');
  t.equal(parseArgs([...SOCK, '--no-sandbox']).sandbox, false);
  t.same(parseArgs([...SOCK, '--runas', 'qemu']).runAs, { user: 'qemu' });
  t.same(parseArgs([...SOCK, '--runas', 'qemu:kvm']).runAs, { user: 'qemu', group: 'kvm' });
  t.same(parseArgs([...SOCK, '--runas', '1000']).runAs, { user: 1000 });
  t.same(parseArgs([...SOCK, '--runas', '1000:100']).runAs, { user: 1000, group: 100 });
  t.same(parseArgs([...SOCK, '--runas', 'svc$']).runAs, { user: 'svc$' });
  for (const bad of ['', 'a:b:c', ':100', 'qemu:', '0', '1000:0', 'root', 'qemu:root', '4294967295', 'bad name', '-x']) {
    const err = t.throws(() => parseArgs([...SOCK, '--runas', bad])) as Error;
    t.ok(
      err instanceof UsageError && /^--runas must be USER, UID, USER:GROUP or UID:GID/.test(err.message) && !err.message.includes('\n'),
      `${JSON.stringify(bad)}: ${err.message}`,
    );
  }
});

t.test('--runas resolution', async (t) => {
  t.same(resolveRunAs(undefined, PASSWD, GROUP), { name: 'nobody', uid: 65534, gid: 65534 }, 'default: nobody');
  t.same(resolveRunAs({ user: 'qemu' }, PASSWD, GROUP), { name: 'qemu', uid: 107, gid: 113 }, 'primary group');
  t.same(resolveRunAs({ user: 'qemu', group: 'kvm' }, PASSWD, GROUP), { name: 'qemu', uid: 107, gid: 104 });
  t.same(resolveRunAs({ user: 107 }, PASSWD, GROUP), { name: 'qemu', uid: 107, gid: 113 }, 'a listed uid takes its group');
  t.same(resolveRunAs({ user: 5000 }, PASSWD, GROUP), { name: '5000', uid: 5000, gid: 5000 }, 'an unlisted uid: gid = uid');
  t.same(resolveRunAs({ user: 5000, group: 6000 }, PASSWD, GROUP), { name: '5000', uid: 5000, gid: 6000 });
  const missing = t.throws(() => resolveRunAs({ user: 'nosuch' }, PASSWD, GROUP)) as Error;
  t.ok(missing instanceof PrivilegeError);
  t.equal(missing.message, "--runas: no user 'nosuch' in /etc/passwd: pass --runas with an existing user, or numeric ids such as --runas 65534:65534");
  t.throws(() => resolveRunAs({ user: 'qemu', group: 'nosuch' }, PASSWD, GROUP), /no group 'nosuch' in \/etc\/group/);
  t.throws(() => resolveRunAs(undefined, 'root:x:0:0::/:/bin/sh\n', ''), /switches to user nobody, which does not exist here: pass --runas/);
  t.throws(() => resolveRunAs({ user: 'daemon', group: 'root' }, PASSWD, GROUP), /is root \(gid 0\)/, 'group root refused');
});

t.test('ping sockets and the CAP_NET_RAW decision', async (t) => {
  t.same(parsePingGroupRange('1\t0\n'), [1, 0]);
  t.same(parsePingGroupRange('0\t2147483647\n'), [0, 2147483647]);
  t.equal(parsePingGroupRange(undefined), undefined);
  t.equal(parsePingGroupRange('garbage'), undefined);
  t.notOk(pingSocketsAllowed([1, 0], [65534]), '"1 0" (the kernel default): nobody may');
  t.ok(pingSocketsAllowed([0, 2147483647], [65534]));
  t.ok(pingSocketsAllowed([100, 200], [5, 150]), 'a supplementary group counts');
  t.notOk(pingSocketsAllowed([0, 0], [65534]), 'root only');
  t.notOk(pingSocketsAllowed(undefined, [0]));

  t.same(decideEcho([1, 0], [65534], true), { echoMode: 'raw', keepNetRaw: true }, 'no ping sockets, CAP_NET_RAW held: keep it');
  t.same(decideEcho([1, 0], [65534], false), { echoMode: 'none', keepNetRaw: false }, 'no ping sockets, no CAP_NET_RAW: none');
  t.same(decideEcho([0, 2147483647], [65534], true), { echoMode: 'ping', keepNetRaw: false }, 'ping sockets: keep nothing');
  t.same(decideEcho([0, 0], [65534], true), { echoMode: 'raw', keepNetRaw: true }, "root's group only: not for nobody");
  t.same(decideEcho(undefined, [65534], true), { echoMode: 'raw', keepNetRaw: true }, 'unreadable range: as if off');

  t.equal(effectiveCapabilities('Name:\tx\nCapEff:\t000001ffffffffff\n'), 0x1ffffffffffn);
  t.equal(effectiveCapabilities('CapEff:\t0000000000002000\n') & (1n << 13n), 1n << 13n);
  t.equal(effectiveCapabilities(undefined), 0n);
});

t.test('can the user remove the socket at exit', async (t) => {
  const tree: Record<string, { uid: number; gid: number; mode: number }> = {
    '/': { uid: 0, gid: 0, mode: 0o755 },
    '/tmp': { uid: 0, gid: 0, mode: 0o1777 },
    '/run': { uid: 0, gid: 0, mode: 0o755 },
    '/tmp/private': { uid: 0, gid: 0, mode: 0o700 },
    '/tmp/shared': { uid: 0, gid: 113, mode: 0o770 },
  };
  const stat = (p: string) => tree[p] ?? { uid: 0, gid: 0, mode: 0o755 };
  const nobody = { uid: 65534, gid: 65534 };
  t.equal(whyCannotRemove('/tmp/v.sock', nobody, stat), undefined, 'sticky /tmp: the file is its own after the chown');
  t.equal(whyCannotRemove('/run/v.sock', nobody, stat), '/run is not writable for it');
  t.equal(whyCannotRemove('/tmp/private/v.sock', nobody, stat), '/tmp/private is not searchable for it');
  t.equal(whyCannotRemove('/tmp/shared/v.sock', { uid: 107, gid: 113 }, stat), undefined, 'group-writable directory');
});

t.test('the plan', async (t) => {
  const sys = (euid: number) => ({
    euid: () => euid,
    groups: () => [1000],
    readFile: (p: string) => (p === '/etc/passwd' ? PASSWD : p === '/etc/group' ? GROUP : undefined),
  });
  t.same(planPrivileges({ sandbox: true }, sys(0)), { user: { name: 'nobody', uid: 65534, gid: 65534 }, sandbox: true, runAsIgnored: false });
  t.same(planPrivileges({ runAs: { user: 'qemu' }, sandbox: false }, sys(0)), {
    user: { name: 'qemu', uid: 107, gid: 113 },
    sandbox: false,
    runAsIgnored: false,
  });
  t.same(planPrivileges({ sandbox: true }, sys(1000)), { user: undefined, sandbox: true, runAsIgnored: false }, 'not root: no switch');
  t.same(planPrivileges({ runAs: { user: 'qemu' }, sandbox: true }, sys(1000)), { user: undefined, sandbox: true, runAsIgnored: true });
  t.throws(() => planPrivileges({ runAs: { user: 'nosuch' }, sandbox: true }, sys(0)), PrivilegeError);
});

// ---------- end to end: the CLI as root ----------

const notRoot = process.getuid?.() !== 0 ? 'needs root (vunet drops privileges only when started as root)' : false;

/** The lines of /proc/PID/status that say what the process may do. */
function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

function socketDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-priv-'));
  chmodSync(dir, 0o1777); // like /tmp: nobody may remove its own socket there
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const nobody = resolveRunAs(undefined, readFileSync('/etc/passwd', 'utf8'), readFileSync('/etc/group', 'utf8'));
const hex = (caps: bigint): string => caps.toString(16).padStart(16, '0');

/**
 * Plays the guest on the vhost-user socket: an ARP request for the gateway, then a ping to the
 * gateway address, which vunet relays to the host's loopback through the echo socket it opens
 * now, after the drop (raw or ping socket). Resolves with vunet's ARP reply and the echo reply's
 * ICMP payload, when they came.
 */
async function asGuest(sock: string): Promise<{ arp?: ArpPacket; echoData?: Uint8Array }> {
  const guest = await connectGuest(sock);
  try {
    /** The first frame `pick` accepts within 5 s (link-up also sends MLD reports, ARP probes...). */
    const nextFrame = async <T>(pick: (f: Uint8Array) => T | undefined): Promise<T | undefined> => {
      for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
        for (const f of await guest.receive(1, deadline - Date.now())) {
          const found = pick(f);
          if (found !== undefined) return found;
        }
      }
      return undefined;
    };
    guest.send(arpRequest(GW_IP));
    const arp = await nextFrame((f) => {
      if (f[12] !== 0x08 || f[13] !== 0x06) return undefined;
      const a = new ArpPacket().at(f, 14, f.length - 14);
      return a.check() && a.operation === ArpOp.REPLY ? a : undefined;
    });
    const payload = new TextEncoder().encode('confined vunet');
    guest.send(echoRequest(0x4242, 1, payload));
    // IPv4 (20-byte header from vunet), ICMP echo reply: type 0 at 34, data from 42.
    const echoData = await nextFrame((f) => (f[12] === 0x08 && f[13] === 0x00 && f[23] === 1 && f[34] === 0 ? f.slice(42) : undefined));
    return { ...(arp ? { arp } : {}), ...(echoData ? { echoData } : {}) };
  } finally {
    guest.fe.close();
  }
}

t.test('vunet started as root runs as nobody in the sandbox, and still serves', { skip: notRoot }, async (t) => {
  const dir = socketDir(t);
  const sock = join(dir, 'vunet.sock');
  const v = await spawnVunet(null, ['--socket', sock, '--log-level', 'info'], { env: { VUNET_TEST_EXEC_PROBE: '1' }, failOnExit: true });
  t.teardown(() => void v.proc.kill('SIGKILL'));

  const pid = v.proc.pid!;
  const st = procStatus(pid);
  t.comment(
    Object.entries(st)
      .map(([k, val]) => `${k}:\t${val}`)
      .join('\n'),
  );
  // What vunet should have decided here: ping sockets for nobody's group in this namespace, else
  // CAP_NET_RAW (the test runs as root, so vunet had it).
  const range = parsePingGroupRange(readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8'));
  const { echoMode, keepNetRaw } = decideEcho(range, [nobody.gid], true);
  const caps = hex(keepNetRaw ? 1n << 13n : 0n);
  t.equal(st.Uid, `${nobody.uid}\t${nobody.uid}\t${nobody.uid}\t${nobody.uid}`, 'Uid: nobody (real, effective, saved, fs)');
  t.equal(st.Gid, `${nobody.gid}\t${nobody.gid}\t${nobody.gid}\t${nobody.gid}`, "Gid: nobody's group");
  t.equal(st.Groups, '', 'no supplementary groups');
  t.equal(st.CapEff, caps, `CapEff ${caps} (ping_group_range ${range?.join(' ')}: ${keepNetRaw ? 'CAP_NET_RAW kept for raw ICMP' : 'nothing kept'})`);
  t.equal(st.CapPrm, caps, 'CapPrm the same');
  t.equal(st.CapInh, '0000000000000000');
  t.equal(st.CapAmb, '0000000000000000');
  t.equal(st.NoNewPrivs, '1', 'NoNewPrivs: 1');
  t.equal(st.Seccomp, '2', 'Seccomp: 2 (filter)');
  t.match(v.log(), new RegExp(`"echo":"${echoMode}".*privileges: running as ${nobody.name}`), 'one info line says what was done');
  t.match(v.log(), /"probe":"\/bin\/true","result":"EPERM".*"msg":"exec probe"/, 'exec probe: EPERM');

  const { arp, echoData } = await asGuest(sock);
  t.ok(arp, 'an ARP reply through the vhost-user socket after confinement');
  t.equal(arp?.senderIp, GW_IP, 'from the gateway address');
  t.equal(arp?.targetIp, GUEST_IP, 'to the guest');
  if (echoMode === 'none') t.equal(echoData, undefined, 'no echo socket: the ping goes unanswered');
  else
    t.equal(
      new TextDecoder().decode(echoData),
      'confined vunet',
      `the guest's ping to the gateway answered through a ${echoMode} socket opened after the drop`,
    );

  v.proc.kill('SIGTERM');
  t.equal(await v.exited, 0, 'SIGTERM: exit 0');
  t.notOk(existsSync(sock), 'the socket file is removed');
});

t.test('in a namespace where ping sockets work, nothing is kept', { skip: notRoot !== false ? notRoot : (canUseNetns() ?? false) }, async (t) => {
  const ns = `vunet-priv-${process.pid}`;
  t.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0, `namespace ${ns}`);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
  // Only this namespace and its loopback: the guest's ping to the gateway goes to 127.0.0.1 there.
  spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ping_group_range=0 2147483647']);
  spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const dir = socketDir(t);
  const sock = join(dir, 'vunet.sock');
  const v = await spawnVunet(ns, ['--socket', sock, '--log-level', 'info'], { failOnExit: true });
  t.teardown(() => void v.proc.kill('SIGKILL'));
  const st = procStatus(v.proc.pid!);
  t.comment(
    Object.entries(st)
      .map(([k, val]) => `${k}:\t${val}`)
      .join('\n'),
  );
  t.equal(st.Uid?.split('\t')[0], String(nobody.uid));
  t.equal(st.CapEff, '0000000000000000', 'CapEff: 0 (ping sockets serve the guest)');
  t.equal(st.CapPrm, '0000000000000000');
  t.equal(st.Seccomp, '2');
  t.match(v.log(), /"echo":"ping".*capabilities none/, 'guest pings through ping sockets');
  const { echoData } = await asGuest(sock);
  t.equal(new TextDecoder().decode(echoData), 'confined vunet', "the guest's ping answered through a ping socket");
  v.proc.kill('SIGTERM');
  t.equal(await v.exited, 0);
  t.notOk(existsSync(sock));
});

t.test('--no-sandbox and --runas', { skip: notRoot }, async (t) => {
  const dir = socketDir(t);
  const sock = join(dir, 'vunet.sock');
  const v = await spawnVunet(null, ['--socket', sock, '--log-level', 'info', '--no-sandbox'], { env: { VUNET_TEST_EXEC_PROBE: '1' }, failOnExit: true });
  t.teardown(() => void v.proc.kill('SIGKILL'));
  const st = procStatus(v.proc.pid!);
  t.equal(st.Uid?.split('\t')[0], String(nobody.uid), 'root is still dropped');
  t.equal(st.NoNewPrivs, '0');
  t.equal(st.Seccomp, '0');
  t.match(v.log(), /"level":40.*sandbox off \(--no-sandbox\)/, 'a warning says the sandbox is off');
  t.match(v.log(), /"result":"exit 0".*exec probe/, 'exec works without the sandbox');
  v.proc.kill('SIGTERM');
  t.equal(await v.exited, 0);

  const r = spawnSync(process.execPath, [BIN, '--socket', join(dir, 'other.sock'), '--runas', 'no-such-user'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2, 'an unknown --runas user: exit 2');
  t.match(
    r.stderr,
    /^vunet: --runas: no user 'no-such-user' in \/etc\/passwd: pass --runas with an existing user, or numeric ids such as --runas 65534:65534\n$/,
  );
  t.notOk(existsSync(join(dir, 'other.sock')), 'refused before the socket was created');
});
