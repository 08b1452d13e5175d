// The command line: `vunet --socket PATH [options]` into a validated, typed VunetOptions.
//
// commander does the structure (flags, repeats, required --socket, unknown flags, --help,
// --version) and collects raw strings; every value is then checked here so that each failure is one
// line that names the flag and says what would be accepted. Nothing here prints or exits: errors
// are thrown (UsageError, HelpShown) and the CLI entry decides (`vunet: <message>`, exit 2).
//
// Decisions:
// - --ipv4 takes CIDR with any address in the network (10.0.2.15/24 means 10.0.2.0/24); the prefix
//   is /8 to /28 (/28 leaves room for .2, .3 and a few leases). The network must be usable
//   unicast: it may not overlap 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16 (link-local, which guests
//   manage themselves), 224.0.0.0/4 (multicast) or 240.0.0.0/4 (reserved, incl. broadcast).
//   Private (RFC 1918), CGNAT and public unicast networks are accepted.
// - --ipv6 takes a /64 only (SLAAC forms addresses from a /64 prefix), any address in it. It may
//   not overlap ::/8 (unspecified, loopback, IPv4-mapped), fe80::/10 (link-local) or ff00::/8
//   (multicast). fec0::/10 (slirp's default), ULA and global prefixes are accepted.
// - --mtu is 1280..65520 (one MTU for both families; IPv6 needs 1280). With --no-ipv6 the floor
//   is 576, the datagram size every IPv4 host must accept (RFC 791).
// - --guest-mac: six hex octets separated by ':' or '-'; unicast, not all-zero, not vunet's own MAC.
// - --dns: dotted-quad IPv4 or IPv6 (zone allowed: fe80::1%eth0); not unspecified or multicast.
//   Kept in the order given, duplicates dropped, IPv6 written in RFC 5952 form.
// - --search: hostname syntax (LDH labels of 1..63, at most 253 characters, last label not all
//   digits); one trailing dot allowed; stored lower-case without the dot, duplicates dropped.
// - --lease-time 60..31536000 s (a minute to a year); --udp-timeout 1..86400 s.
// - --socket: at most 107 bytes (sun_path); kept as given (relative paths stay relative).
// - Giving both --ipv6 and --no-ipv6 is an error, not "last one wins".
// - -t/--tcp-forward and -u/--udp-forward take `[ADDR:]HOSTPORT[:GUESTPORT]`, repeatable. Ports
//   are 1..65535 or ranges `8000-8010`; GUESTPORT defaults to HOSTPORT; a guest range must be as
//   long as the host range, and a single guest port with a host range is an error (many host ports
//   onto one guest port is rarely meant). ADDR is a dotted-quad IPv4 or a bracketed IPv6 address
//   (`[::1]:2222:22`; unbracketed IPv6 is refused as ambiguous), no zone, not multicast or
//   broadcast; an IPv4-mapped IPv6 address is taken as the IPv4 address. Without ADDR the port is
//   forwarded on all addresses of both families (family 'any'); 0.0.0.0 or [::] means all
//   addresses of that family only. Ranges are expanded into one PortForward per port, at most
//   MAX_FORWARDS over both flags. The same host port may not be forwarded twice on overlapping
//   addresses of one protocol (binding would fail).
// - --runas USER[:GROUP] (names or numbers, each checked here for syntax only; the names are
//   looked up in /etc/passwd and /etc/group at start by src/main/privileges.ts). It matters only
//   when vunet starts as root (default user: nobody). --no-sandbox turns off the seccomp filter,
//   Landlock and no_new_privs, for debugging; the switch away from root still happens.
// - --max-memory SIZE: bytes, or with a K, M or G suffix (powers of 1024), 16M..64G; default 256M.
// - --control PATH: the control socket (`vunet ctl`), at most 107 bytes. Default: beside the
//   vhost-user socket, `<socket>.ctl` (none, with a warning, when that would pass 107 bytes);
//   with a given socket (--fd, socket activation) there is no path to put it beside, so it is
//   off unless --control names one. --no-control turns it off.
// - --deny-host fences every address of this host (loopback is always fenced). --deny CIDR, for
//   either family, repeatable; a bare address is a /32 or /128; host bits set are an error (a typo
//   more often than a wish), as are zones.
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import ipaddr from 'ipaddr.js';
import { defaultConfig, ipv4ConfigFor, ipv6ConfigFor, MAX_MTU, MIN_MTU, type StackConfig } from '../iface/config.js';
import type { Cidr } from '../nat/fence.js';
import { TopologyFileError, parseTopology } from '../sim/topology-file.js';
import type { Topology } from '../sim/topology.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface VunetOptions {
  /** Where vunet makes the vhost-user socket (QEMU's `-chardev socket,path=`); undefined when the
   *  socket is given already listening (listenFd). */
  socketPath: string | undefined;
  /** More guests' sockets (--socket given more than once), after the first. */
  moreSockets?: string[];
  /** --fd, or systemd's socket activation: the listening socket vunet was given. */
  listenFd?: number;
  /** What the stack is built with; defaultConfig() unless options changed it. */
  config: StackConfig;
  /** Upstream DNS servers (normalised IP strings); empty means the host's resolv.conf. */
  dnsUpstream: string[];
  /** Capture file for every frame, both directions. */
  pcapFile?: string;
  /** --topology: the simulated network behind the gateway. */
  topology?: Topology;
  /** --pid-file: written once the socket listens, removed at a clean exit. */
  pidFile?: string;
  logLevel: LogLevel;
  /** Idle time after which a UDP NAT mapping is dropped, seconds. */
  udpTimeoutSec: number;
  /** --tcp-time-wait, ms (0..240000). */
  tcpTimeWaitMs: number;
  /** Whether the gateway address (10.0.2.2) maps to the host's loopback, as slirp does. */
  mapGateway: boolean;
  /** Host ports forwarded to the guest (-t, -u): one entry per port, TCP entries first, each
   * protocol in the order given. */
  forwards: PortForward[];
  /** --runas: who to become when started as root (undefined: nobody). */
  runAs?: RunAsSpec;
  /** --socket-mode: the socket file's permission bits (undefined: as the umask leaves them). */
  socketMode?: number;
  /** --socket-group: the socket file's group, a name or a GID (a QEMU running as another user
   *  of that group may then connect). */
  socketGroup?: string | number;
  /** False with --no-sandbox: no seccomp filter, Landlock or no_new_privs. */
  sandbox: boolean;
  /** --max-memory: the memory budget, bytes. */
  maxMemory: number;
  /** --deny-host: fence every address of this host from the guest. */
  denyHost: boolean;
  /** --deny: prefixes the guest may not reach. */
  deny: Cidr[];
  /** Where the control socket listens (`vunet ctl`); undefined: no control socket. */
  controlPath: string | undefined;
  /** Why there is no control socket though none was refused (to be logged as a warning). */
  controlWarning?: string;
}

/** --runas as written: a user (name or uid) and optionally a group (name or gid). */
export interface RunAsSpec {
  user: string | number;
  group?: string | number;
}

/**
 * One host port forwarded to one guest port. `family` says which host addresses listen:
 * 'any' (no ADDR given: every address of both families, `addr` null), 4 or 6 (`addr` has 4 or 16
 * bytes; all-zero means every address of that family only, i.e. an IPv6 wildcard bound v6-only).
 */
export interface PortForward {
  proto: 'tcp' | 'udp';
  /** The guest it goes to (guest1, guest2, ...: --socket's order); the first when undefined. */
  guest?: string;
  addr: Uint8Array | null;
  family: 4 | 6 | 'any';
  hostPort: number;
  guestPort: number;
}

/** Smallest MTU accepted with --no-ipv6 (every IPv4 host accepts 576-byte datagrams, RFC 791). */
export const MIN_MTU_IPV4_ONLY = 576;
export const MIN_IPV4_PREFIX = 8;
export const MAX_IPV4_PREFIX = 28;
export const DEFAULT_UDP_TIMEOUT_SEC = 120;
export const MAX_UDP_TIMEOUT_SEC = 86400;
/** TIME_WAIT: short (a NAT's connections are re-originated; 2 MSL would hold ports for minutes). */
export const DEFAULT_TCP_TIME_WAIT_MS = 2000;
export const MIN_LEASE_TIME_SEC = 60;
export const MAX_LEASE_TIME_SEC = 31_536_000;
/** sun_path holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;
/** Guests on one vunet (one --socket each). */
export const MAX_GUESTS = 16;
/** Most forwarded ports (-t and -u together, ranges counted port by port). */
export const MAX_FORWARDS = 1024;
export const DEFAULT_MAX_MEMORY_TEXT = '256M';
export const MIN_MAX_MEMORY = 16 * 1024 * 1024;
export const MAX_MAX_MEMORY = 64 * 1024 * 1024 * 1024;

const DEFAULT_IPV4 = '10.0.2.0/24';
const DEFAULT_IPV6 = 'fec0::/64';

/** A bad command line. The message is one line naming the flag; the CLI prints `vunet: <message>`. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = 2;
}

/** --help or --version: the text has been written; the CLI should exit with status 0. */
/** Why and when the device needs vectors=0: QEMU 7.2 segfaults in msix_set_vector_notifiers
 *  (vhost_net_start) when a vhost-user virtio-net device starts under TCG. With KVM, MSI-X works
 *  and vectors=0 would only push the device back to the slower shared INTx interrupt. */
const TCG_NOTE = 'With TCG instead of KVM, QEMU 7.2 crashes as the device starts unless its MSI-X is off; there, and only there, use:';

/** What `--print-capabilities` prints (QEMU's docs/interop/vhost-user.json,
 *  VHostUserBackendCapabilities): a net backend, which defines no further features. */
export const BACKEND_CAPABILITIES = { type: 'net' } as const;

export class HelpShown extends Error {
  override readonly name = 'HelpShown';
  readonly exitCode = 0;
}

export interface ProgramOutput {
  /** Where --help and --version text goes (default: process.stdout). */
  writeOut?: (text: string) => void;
}

/** A string default shown in --help without quotes. */
const shown = (value: string): [string, string] => [value, value];

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** The commander program: flags, help text and version. parseArgs() adds validation. */
export function buildProgram(output: ProgramOutput = {}): Command {
  const defaults = defaultConfig();
  const program = new Command('vunet')
    .usage('--socket PATH [options]')
    .description(
      "User-mode network backend for QEMU: serves the guest's virtio-net device over vhost-user and " +
        "gives it what `-netdev user` (slirp) gives: DHCP, SLAAC, DNS and NAT to the host's network.",
    )
    .exitOverride()
    .allowExcessArguments(false)
    .configureOutput({
      writeOut: output.writeOut ?? ((s) => void process.stdout.write(s)),
      writeErr: () => {},
      outputError: () => {},
    });

  program
    .addOption(
      // Required, but checked after parsing: an unknown option or a bad value is the first thing to say.
      new Option('--socket <path>', 'vhost-user socket to listen on; QEMU connects to it (required). Repeat it for more guests on one segment').argParser(
        (v: string, previous: string[] | undefined) => [...(previous ?? []), v],
      ),
    )
    .addOption(new Option('--fd <n>', 'listen on this inherited fd, a listening unix socket (systemd socket activation sets it by itself)'))
    .addOption(new Option('--socket-path <path>', "the same as --socket (the name QEMU's vhost-user backend conventions use)"))
    .addOption(
      new Option('--socket-mode <mode>', 'permission bits of the socket file, octal (0660: its owner and group may connect)').default(
        undefined,
        'as the umask leaves them',
      ),
    )
    .addOption(new Option('--socket-group <group>', "group of the socket file, a name or a GID (for a QEMU run as another user, libvirt's qemu)"))
    .addOption(
      new Option('--control <path>', 'control socket for `vunet ctl` (JSON lines); off with --no-control').default(undefined, '<socket>.ctl; none with --fd'),
    )
    .addOption(new Option('--no-control', 'no control socket'))
    .addOption(new Option('--print-capabilities', "print the backend's capabilities as JSON (QEMU's vhost-user backend conventions) and exit"))
    .addOption(new Option('--ipv4 <cidr>', 'guest IPv4 network, /8 to /28; vunet is .2, DNS .3, DHCP leases start at .15').default(...shown(DEFAULT_IPV4)))
    .addOption(new Option('--ipv6 <prefix>', 'guest IPv6 /64 prefix for SLAAC; vunet is ::2, DNS ::3').default(...shown(DEFAULT_IPV6)))
    .addOption(new Option('--no-ipv6', 'IPv4 only: no router advertisements, no IPv6 addresses'))
    .addOption(
      new Option('--mtu <bytes>', `link MTU told to the guest, ${MIN_MTU}..${MAX_MTU} (${MIN_MTU_IPV4_ONLY}.. with --no-ipv6)`).default(
        ...shown(String(defaults.mtu)),
      ),
    )
    .addOption(new Option('--guest-mac <mac>', "the guest's MAC (e.g. 52:54:00:12:34:56)").default(undefined, 'learnt from its first frame'))
    .addOption(new Option('--dns <addr>', 'upstream DNS server, IPv4 or IPv6; repeat for more').argParser(collect).default([], "the host's /etc/resolv.conf"))
    .addOption(new Option('--search <domain>', 'DNS search domain handed to the guest; repeat for more').argParser(collect).default([], 'none'))
    .addOption(new Option('--pcap <file>', 'write every frame, both directions, to this pcap file'))
    .addOption(new Option('--topology <file>', 'a simulated network of routers and hosts behind the gateway (YAML; see examples/topologies)'))
    .addOption(new Option('--pid-file <path>', 'write the process id here once the socket listens; removed at exit (refused if a running vunet holds it)'))
    .addOption(new Option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')}`).default(...shown('info')))
    .addOption(new Option('--udp-timeout <sec>', 'seconds an idle UDP NAT mapping is kept').default(...shown(String(DEFAULT_UDP_TIMEOUT_SEC))))
    .addOption(new Option('--tcp-time-wait <ms>', 'how long a closed TCP connection stays in TIME_WAIT').default(...shown(String(DEFAULT_TCP_TIME_WAIT_MS))))
    .addOption(new Option('--no-map-gw', "don't forward connections to the gateway address to the host's loopback"))
    .addOption(
      new Option('--runas <user>', 'started as root, become this user once the socket is open: NAME, UID, NAME:GROUP or UID:GID').default(undefined, 'nobody'),
    )
    .addOption(new Option('--no-sandbox', 'no seccomp filter, Landlock or no_new_privs (for debugging; root is still dropped)'))
    .addOption(
      new Option('--max-memory <size>', 'memory budget for buffers (TCP, fragments, queues): bytes or K/M/G, 16M..64G').default(
        ...shown(DEFAULT_MAX_MEMORY_TEXT),
      ),
    )
    .addOption(new Option('--deny-host', "fence the host's own addresses from the guest (loopback always is; the gateway still maps to it)"))
    .addOption(
      new Option('--deny <cidr>', 'a prefix the guest may not reach (IPv4 or IPv6, e.g. 192.168.0.0/16); repeat for more')
        .argParser(collect)
        .default([], 'none'),
    )
    .addOption(
      new Option(
        '-t, --tcp-forward <spec>',
        'forward a host TCP port to the guest: [ADDR:]HOSTPORT[:GUESTPORT], ports or ranges (8000-8010), ' +
          'IPv6 ADDR in brackets; without ADDR on all addresses; repeat for more',
      )
        .argParser(collect)
        .default([], 'none'),
    )
    .addOption(
      new Option('-u, --udp-forward <spec>', 'forward a host UDP port to the guest, same form as --tcp-forward').argParser(collect).default([], 'none'),
    )
    .addOption(new Option('--lease-time <sec>', 'DHCP lease time in seconds').default(...shown(String(defaults.leaseTime))))
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .helpOption('-h, --help', 'print this help and exit');

  program.addHelpText(
    'after',
    `
Example (MEM is the guest's memory size, e.g. MEM=2G: -m and size= must agree):
  vunet --socket /tmp/vunet.sock &
  qemu-system-x86_64 -accel kvm -m $MEM \\
    -object memory-backend-memfd,id=mem,size=$MEM,share=on -numa node,memdev=mem \\
    -chardev socket,id=c0,path=/tmp/vunet.sock,reconnect=1 \\
    -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0 ...
  ${TCG_NOTE}
    -device virtio-net-pci,netdev=n0,vectors=0

Port forwards: -t 2222:22 (host port 2222, all addresses, to guest port 22),
  -t 127.0.0.1:8080:80, -t [::1]:2222:22, -u 6000-6009 (ports 6000..6009 to the same ports).

A running vunet answers \`vunet ctl --socket PATH status\` (and add, remove, forwards, leases,
  neighbours, flows, counters: see vunet ctl --help) on its control socket, PATH.ctl.

The guest's memory must be shared (share=on, or no network) and the same size as -m.`,
  );
  return program;
}

/**
 * What vunet prints once it listens: the QEMU arguments that attach a guest to `socketPath`. The
 * memory size is the shell variable MEM, not a number: it must be the guest's own `-m`, which only
 * the user knows, and a made-up one (a working-looking 512M) would be copied as it is.
 */
export function qemuBanner(socketPath: string): string {
  const path = socketPath.replaceAll(',', ',,'); // QEMU's option syntax doubles commas
  return [
    "Start QEMU with these arguments, MEM being the guest's memory size (e.g. MEM=2G; -m and size= must agree):",
    `    -m $MEM -object memory-backend-memfd,id=mem,size=$MEM,share=on -numa node,memdev=mem \\`,
    `    -chardev socket,id=vunet0,path=${path},reconnect=1 \\`,
    '    -netdev vhost-user,id=net0,chardev=vunet0 \\',
    '    -device virtio-net-pci,netdev=net0',
    TCG_NOTE,
    '    -device virtio-net-pci,netdev=net0,vectors=0',
    '',
  ].join('\n');
}

/**
 * Parses the user's arguments (process.argv.slice(2)) into validated options.
 * Throws UsageError for a bad command line and HelpShown after printing --help/--version.
 */
/**
 * `activatedFd`: the socket systemd's socket activation passed (LISTEN_FDS, read by the CLI), used
 * when the command line names none.
 */
export function parseArgs(argv: readonly string[], output: ProgramOutput = {}, activatedFd?: number): VunetOptions {
  // QEMU's vhost-user backend conventions: with --print-capabilities the backend prints what it is
  // and exits, whatever else the command line says.
  if (argv.includes('--print-capabilities')) {
    (output.writeOut ?? ((s: string) => void process.stdout.write(s)))(`${JSON.stringify(BACKEND_CAPABILITIES)}\n`);
    throw new HelpShown('capabilities');
  }
  const program = buildProgram(output);
  let sawIpv6 = false;
  let sawNoIpv6 = false;
  program.on('option:ipv6', () => (sawIpv6 = true));
  program.on('option:no-ipv6', () => (sawNoIpv6 = true));
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    throw fromCommander(err, program);
  }
  if (sawIpv6 && sawNoIpv6) throw new UsageError('--ipv6 and --no-ipv6 cannot be used together: choose one');

  const o = program.opts<RawOptions>();
  const config = defaultConfig();

  if (o.socket !== undefined && o.socketPath !== undefined) throw new UsageError('--socket and --socket-path name the same thing: give one');
  // Several --socket: one guest each, on one segment (the first is the one forwards reach).
  const sockets = o.socket ?? (o.socketPath !== undefined ? [o.socketPath] : []);
  if (sockets.length > MAX_GUESTS) throw new UsageError(`--socket is given ${sockets.length} times: at most ${MAX_GUESTS} guests share one vunet`);
  const dup = sockets.find((p, i) => sockets.indexOf(p) !== i);
  if (dup !== undefined) throw new UsageError(`--socket ${dup} is given twice: one socket per guest`);
  for (const p of sockets.slice(1)) {
    if (p === '') throw new UsageError('--socket needs a path for the vhost-user socket');
    if (Buffer.byteLength(p) > MAX_SOCKET_PATH_BYTES) throw new UsageError(`--socket path ${p} is over ${MAX_SOCKET_PATH_BYTES} bytes: use a shorter path`);
  }
  const socket = sockets[0];
  let listenFd: number | undefined;
  if (o.fd !== undefined) {
    if (socket !== undefined) throw new UsageError('--fd and --socket both name the vhost-user socket: give one');
    listenFd = parseInteger('--fd', o.fd, 0, 0x7fffffff);
  } else if (socket === undefined && activatedFd !== undefined) {
    listenFd = activatedFd;
  }
  if (socket === undefined && listenFd === undefined) {
    throw new UsageError('--socket PATH is required: the vhost-user socket QEMU connects to (see vunet --help)');
  }
  if (socket === '') throw new UsageError('--socket needs a path for the vhost-user socket');
  if (socket !== undefined) {
    const socketBytes = Buffer.byteLength(socket);
    if (socketBytes > MAX_SOCKET_PATH_BYTES) {
      throw new UsageError(`--socket path is ${socketBytes} bytes; Unix socket paths can be at most ${MAX_SOCKET_PATH_BYTES}: use a shorter path`);
    }
  }
  if (listenFd !== undefined && (o.socketMode !== undefined || o.socketGroup !== undefined)) {
    throw new UsageError(
      "--socket-mode and --socket-group apply to a socket vunet makes: for a given one, set them where it is made (systemd's SocketMode=, SocketGroup=)",
    );
  }

  const { controlPath, controlWarning } = parseControlPath(o.control, socket);

  const ipv4 = parseIpv4Network(o.ipv4);
  config.ipv4 = ipv4ConfigFor(ipv4.network, ipv4.prefixLength);
  config.ipv6 = o.ipv6 === false ? undefined : ipv6ConfigFor(parseIpv6Prefix(o.ipv6));

  const minMtu = config.ipv6 ? MIN_MTU : MIN_MTU_IPV4_ONLY;
  config.mtu = parseInteger('--mtu', o.mtu, minMtu, MAX_MTU, config.ipv6 ? `; down to ${MIN_MTU_IPV4_ONLY} with --no-ipv6` : '');

  if (o.guestMac !== undefined) config.guestMac = parseGuestMac(o.guestMac, config.mac);
  config.searchDomains = dedupe(o.search.map(parseSearchDomain));
  config.leaseTime = parseInteger('--lease-time', o.leaseTime, MIN_LEASE_TIME_SEC, MAX_LEASE_TIME_SEC);

  const logLevel = o.logLevel.toLowerCase();
  if (!isLogLevel(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got ${o.logLevel})`);
  }
  if (o.pcap === '') throw new UsageError('--pcap needs a file name');
  if (o.pidFile === '') throw new UsageError('--pid-file needs a file name');

  const result: VunetOptions = {
    socketPath: socket,
    ...(sockets.length > 1 ? { moreSockets: sockets.slice(1) } : {}),
    ...(listenFd !== undefined ? { listenFd } : {}),
    config,
    dnsUpstream: dedupe(o.dns.map(parseDnsServer)),
    logLevel,
    udpTimeoutSec: parseInteger('--udp-timeout', o.udpTimeout, 1, MAX_UDP_TIMEOUT_SEC),
    tcpTimeWaitMs: parseInteger('--tcp-time-wait', o.tcpTimeWait, 0, 240_000),
    mapGateway: o.mapGw,
    forwards: parseForwards(o.tcpForward, o.udpForward),
    sandbox: o.sandbox,
    maxMemory: parseSize('--max-memory', o.maxMemory, MIN_MAX_MEMORY, MAX_MAX_MEMORY),
    denyHost: o.denyHost === true,
    deny: o.deny.map(parseDenyPrefix),
    controlPath,
    ...(controlWarning !== undefined ? { controlWarning } : {}),
  };
  const guests = Math.max(1, sockets.length);
  for (const fw of result.forwards) {
    if (fw.guest !== undefined && Number(fw.guest.slice('guest'.length)) > guests) {
      throw new UsageError(`${FORWARD_FLAG[fw.proto]} ...@${fw.guest}: there ${guests === 1 ? 'is one guest' : `are ${guests} guests`} (one per --socket)`);
    }
  }
  if (o.pcap !== undefined) result.pcapFile = o.pcap;
  if (o.topology !== undefined) result.topology = readTopology(o.topology);
  if (o.pidFile !== undefined) result.pidFile = o.pidFile;
  if (o.runas !== undefined) result.runAs = parseRunAs(o.runas);
  if (o.socketMode !== undefined) {
    if (!/^0?[0-7]{3}$/.test(o.socketMode))
      throw new UsageError(`--socket-mode must be octal permission bits such as 0660 or 0666 (got ${show(o.socketMode)})`);
    result.socketMode = parseInt(o.socketMode, 8);
  }
  if (o.socketGroup !== undefined) {
    if (!/^([0-9]+|[a-z_][a-z0-9_.-]*\$?)$/i.test(o.socketGroup))
      throw new UsageError(`--socket-group must be a group name or a GID (got ${show(o.socketGroup)})`);
    result.socketGroup = /^[0-9]+$/.test(o.socketGroup) ? Number(o.socketGroup) : o.socketGroup;
  }
  return result;
}

/** The topology file, read and checked: any problem is one line naming the file and line. */
function readTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--topology: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    // A service's `file:` is read relative to the topology file, at most `max` bytes.
    return parseTopology(text, file, (path, max) => {
      const full = resolve(dirname(file), path);
      if (statSync(full).size > max) throw new Error(`larger than ${max} bytes`);
      return readFileSync(full);
    });
  } catch (err) {
    if (err instanceof TopologyFileError) throw new UsageError(`--topology: ${err.message}`);
    throw err;
  }
}

interface RawOptions {
  socket: string[] | undefined;
  socketPath: string | undefined;
  socketMode: string | undefined;
  socketGroup: string | undefined;
  fd: string | undefined;
  ipv4: string;
  ipv6: string | false;
  mtu: string;
  guestMac: string | undefined;
  dns: string[];
  search: string[];
  pcap: string | undefined;
  topology: string | undefined;
  pidFile: string | undefined;
  logLevel: string;
  udpTimeout: string;
  tcpTimeWait: string;
  mapGw: boolean;
  leaseTime: string;
  tcpForward: string[];
  udpForward: string[];
  runas: string | undefined;
  sandbox: boolean;
  maxMemory: string;
  denyHost: boolean | undefined;
  deny: string[];
  control: string | false | undefined;
}

/** --control / --no-control: the control socket's path, or undefined for none (see the top). */
function parseControlPath(raw: string | false | undefined, socket: string | undefined): { controlPath: string | undefined; controlWarning?: string } {
  if (raw === false) return { controlPath: undefined };
  if (raw === '') throw new UsageError('--control needs a path for the control socket (or --no-control for none)');
  if (raw === undefined) {
    if (socket === undefined) return { controlPath: undefined };
    const path = `${socket}.ctl`;
    // A --socket path that fits only just: vunet starts as before, without the control socket.
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
      return {
        controlPath: undefined,
        controlWarning: `no control socket: ${path} would be longer than ${MAX_SOCKET_PATH_BYTES} bytes (name one with --control)`,
      };
    }
    return { controlPath: path };
  }
  const bytes = Buffer.byteLength(raw);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new UsageError(`--control path is ${bytes} bytes; Unix socket paths can be at most ${MAX_SOCKET_PATH_BYTES}: use a shorter path`);
  }
  if (socket !== undefined && raw === socket) throw new UsageError('--control and --socket name the same path: give the control socket its own');
  return { controlPath: raw };
}

function fromCommander(err: unknown, program: Command): Error {
  if (!(err instanceof CommanderError)) return err instanceof Error ? err : new Error(String(err));
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return new HelpShown(err.code);
  if (err.code === 'commander.excessArguments') {
    return new UsageError(`unexpected argument '${program.args[0] ?? ''}': vunet takes options only (see vunet --help)`);
  }
  // "error: unknown option '--mt'\n(Did you mean --mtu?)" -> "unknown option '--mt': did you mean --mtu?".
  const message = err.message
    .replace(/^error: /, '')
    .replace(/\s*\n\s*\(Did you mean (.*)\)/, ': did you mean $1')
    .replace(/\s*\n\s*/g, ' ')
    .trim();
  return new UsageError(`${message} (see vunet --help)`);
}

// ---------- values ----------

const show = (s: string): string => (s === '' ? "''" : s);

/** `lowHint` is added to the message when the value is below `min`. */
function parseInteger(flag: string, raw: string, min: number, max: number, lowHint = ''): number {
  if (!/^[0-9]{1,15}$/.test(raw)) throw new UsageError(`${flag} must be a whole number from ${min} to ${max} (got ${show(raw)})`);
  const n = Number(raw);
  if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max}${n < min ? lowHint : ''} (got ${n})`);
  return n;
}

/** Blocks no guest network may overlap: [first octets, prefix length, why]. */
const IPV4_FORBIDDEN: ReadonlyArray<readonly [string, number, string]> = [
  ['0.0.0.0', 8, '0.0.0.0/8 ("this network")'],
  ['127.0.0.0', 8, '127.0.0.0/8 (loopback)'],
  ['169.254.0.0', 16, '169.254.0.0/16 (link-local)'],
  ['224.0.0.0', 4, '224.0.0.0/4 (multicast)'],
  ['240.0.0.0', 4, '240.0.0.0/4 (reserved and broadcast)'],
];

function parseIpv4Network(raw: string): { network: number; prefixLength: number } {
  if (!ipaddr.IPv4.isValidCIDRFourPartDecimal(raw)) {
    throw new UsageError(`--ipv4 must be an IPv4 network in CIDR form such as 10.0.2.0/24 (got ${show(raw)})`);
  }
  const [addr, prefixLength] = ipaddr.IPv4.parseCIDR(raw);
  if (prefixLength < MIN_IPV4_PREFIX || prefixLength > MAX_IPV4_PREFIX) {
    throw new UsageError(`--ipv4 prefix must be /${MIN_IPV4_PREFIX} to /${MAX_IPV4_PREFIX} (room for gateway, DNS and leases) (got /${prefixLength})`);
  }
  for (const [first, bits, why] of IPV4_FORBIDDEN) {
    const block = ipaddr.IPv4.parse(first);
    if (overlaps(addr, prefixLength, block, bits)) {
      throw new UsageError(`--ipv4 must be a unicast network such as 10.0.2.0/24; ${raw} overlaps ${why}`);
    }
  }
  const network = ipaddr.IPv4.networkAddressFromCIDR(raw);
  return { network: octetsToUint32(network.octets), prefixLength };
}

const IPV6_FORBIDDEN: ReadonlyArray<readonly [string, number, string]> = [
  ['::', 8, '::/8 (unspecified, loopback, IPv4-mapped)'],
  ['fe80::', 10, 'fe80::/10 (link-local)'],
  ['ff00::', 8, 'ff00::/8 (multicast)'],
];

function parseIpv6Prefix(raw: string): Uint8Array {
  if (!ipaddr.IPv6.isValidCIDR(raw)) {
    throw new UsageError(`--ipv6 must be a /64 prefix such as fec0::/64 (got ${show(raw)})`);
  }
  const [addr, prefixLength] = ipaddr.IPv6.parseCIDR(raw);
  if (addr.zoneId !== undefined) throw new UsageError(`--ipv6 takes a prefix without a zone (got ${raw})`);
  if (prefixLength !== 64) {
    throw new UsageError(`--ipv6 prefix must be /64, because guests configure their addresses by SLAAC, which needs a /64 (got /${prefixLength})`);
  }
  for (const [first, bits, why] of IPV6_FORBIDDEN) {
    if (overlaps(addr, prefixLength, ipaddr.IPv6.parse(first), bits)) {
      throw new UsageError(`--ipv6 must be a unicast /64 such as fec0::/64 or fd00:1::/64; ${raw} overlaps ${why}`);
    }
  }
  return Uint8Array.from(addr.toByteArray());
}

/** Two CIDR blocks overlap when one contains the other's network address at the shorter prefix. */
function overlaps<T extends ipaddr.IPv4 | ipaddr.IPv6>(a: T, aBits: number, b: T, bBits: number): boolean {
  return a.match(b, Math.min(aBits, bBits));
}

const octetsToUint32 = (o: number[]): number => (((o[0] ?? 0) << 24) | ((o[1] ?? 0) << 16) | ((o[2] ?? 0) << 8) | (o[3] ?? 0)) >>> 0;

const formatMac = (m: Uint8Array): string => Array.from(m, (b) => b.toString(16).padStart(2, '0')).join(':');

function parseGuestMac(raw: string, ours: Uint8Array): Uint8Array {
  const m = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(raw);
  if (!m) throw new UsageError(`--guest-mac must be six hex octets such as 52:54:00:12:34:56 (got ${show(raw)})`);
  const mac = Uint8Array.from([m[1], m[3], m[4], m[5], m[6], m[7]], (h) => parseInt(h ?? '', 16));
  if (((mac[0] ?? 0) & 1) !== 0) {
    throw new UsageError(`--guest-mac must be a unicast MAC (lowest bit of the first octet clear, e.g. 52:54:...) (got ${raw})`);
  }
  if (mac.every((b) => b === 0)) throw new UsageError('--guest-mac must not be 00:00:00:00:00:00');
  if (mac.every((b, i) => b === ours[i])) {
    throw new UsageError(`--guest-mac must differ from vunet's own MAC ${formatMac(ours)}`);
  }
  return mac;
}

function parseDnsServer(raw: string): string {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(raw)) addr = ipaddr.IPv4.parse(raw);
  else if (ipaddr.IPv6.isValid(raw)) addr = ipaddr.IPv6.parse(raw);
  else throw new UsageError(`--dns must be an IPv4 or IPv6 address such as 1.1.1.1 or 2606:4700:4700::1111 (got ${show(raw)})`);
  const range = addr.range();
  if (range === 'unspecified' || range === 'multicast' || range === 'broadcast') {
    throw new UsageError(`--dns must be a unicast address (got ${raw}, ${range})`);
  }
  return addr.kind() === 'ipv6' ? (addr as ipaddr.IPv6).toRFC5952String() : addr.toString();
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

function parseSearchDomain(raw: string): string {
  const name = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  const labels = name.split('.');
  const bad = (why: string): UsageError => new UsageError(`--search must be a domain name such as example.com (got ${show(raw)}: ${why})`);
  if (name === '') throw bad('empty');
  if (name.length > 253) throw bad('longer than 253 characters');
  for (const label of labels) {
    if (label === '') throw bad('empty label');
    if (label.length > 63) throw bad('label longer than 63 characters');
    if (!LABEL.test(label)) throw bad(`label "${label}" may only have letters, digits and inner hyphens`);
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) throw bad('last label is all digits');
  return name.toLowerCase();
}

/** A size in bytes: digits with an optional K, M or G (powers of 1024), within [min, max]. */
function parseSize(flag: string, raw: string, min: number, max: number): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(raw.trim());
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(m?.[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G'];
  const n = m ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} must be a size from ${min / 1024 ** 2}M to ${max / 1024 ** 3}G, such as 256M or 1G (got ${show(raw)})`);
  }
  return n;
}

/** --deny: an IPv4 or IPv6 prefix (a bare address is one host). */
function parseDenyPrefix(raw: string): Cidr {
  const text = raw.trim();
  const bad = (why: string): UsageError => new UsageError(`--deny must be an address or prefix such as 192.168.0.0/16 or fd00::/8 (got ${show(raw)}: ${why})`);
  if (text.includes('%')) throw bad('no zones');
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  let prefixLength: number;
  try {
    if (text.includes('/')) [addr, prefixLength] = ipaddr.parseCIDR(text);
    else {
      addr = ipaddr.parse(text);
      prefixLength = addr.kind() === 'ipv4' ? 32 : 128;
    }
  } catch {
    throw bad('not an address or prefix');
  }
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) throw bad('write IPv4 prefixes in IPv4');
  const bytes = Uint8Array.from(addr.toByteArray());
  const family = addr.kind() === 'ipv4' ? 4 : 6;
  for (let bit = prefixLength; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! & (0x80 >> (bit & 7))) !== 0) throw bad(`host bits set after /${prefixLength}`);
  }
  return { family, addr: bytes, prefixLength };
}

// ---------- port forwards ----------

const FORWARD_FLAG = { tcp: '--tcp-forward', udp: '--udp-forward' } as const;

/** An inclusive port range; a single port is a range of one. */
interface PortRange {
  first: number;
  last: number;
  text: string;
}

const rangeSize = (r: PortRange): number => r.last - r.first + 1;

/** Host addresses of one forward, the part that decides whether two forwards collide. */
type ForwardAddress = Pick<PortForward, 'addr' | 'family'>;

interface ParsedForward extends ForwardAddress {
  spec: string;
  /** @GUEST: the guest it goes to (default the first). */
  toGuest?: string;
  host: PortRange;
  guest: PortRange;
}

function parseForwards(tcp: readonly string[], udp: readonly string[]): PortForward[] {
  const specs: Array<{ proto: PortForward['proto']; parsed: ParsedForward }> = [
    ...tcp.map((s) => ({ proto: 'tcp' as const, parsed: parseForwardSpec('tcp', s) })),
    ...udp.map((s) => ({ proto: 'udp' as const, parsed: parseForwardSpec('udp', s) })),
  ];
  const total = specs.reduce((n, { parsed }) => n + rangeSize(parsed.host), 0);
  if (total > MAX_FORWARDS) {
    throw new UsageError(`--tcp-forward and --udp-forward may forward at most ${MAX_FORWARDS} ports in all (got ${total}): use smaller ranges`);
  }
  for (let i = 0; i < specs.length; i++) {
    const a = specs[i]!;
    for (let j = 0; j < i; j++) {
      const b = specs[j]!;
      if (a.proto !== b.proto || !addressesOverlap(a.parsed, b.parsed)) continue;
      const first = Math.max(a.parsed.host.first, b.parsed.host.first);
      if (first > Math.min(a.parsed.host.last, b.parsed.host.last)) continue;
      throw new UsageError(`${FORWARD_FLAG[a.proto]}: host port ${first} is forwarded twice (${b.parsed.spec} and ${a.parsed.spec})`);
    }
  }
  const out: PortForward[] = [];
  for (const { proto, parsed } of specs) {
    for (let k = 0; k < rangeSize(parsed.host); k++) {
      out.push({
        proto,
        addr: parsed.addr === null ? null : parsed.addr.slice(),
        family: parsed.family,
        hostPort: parsed.host.first + k,
        guestPort: parsed.guest.first + k,
        ...(parsed.toGuest !== undefined ? { guest: parsed.toGuest } : {}),
      });
    }
  }
  return out;
}

/**
 * One -t/-u spec, validated as on the command line, expanded to one PortForward per port: what
 * `vunet ctl add` and `remove` take (same syntax, same errors as --tcp-forward/--udp-forward).
 */
export function parseForwardSpecs(proto: PortForward['proto'], spec: string): PortForward[] {
  return parseForwards(proto === 'tcp' ? [spec] : [], proto === 'udp' ? [spec] : []);
}

/** Whether two forwards would take the same host port of one protocol (binding would fail). */
export function forwardsCollide(a: PortForward, b: PortForward): boolean {
  return a.proto === b.proto && a.hostPort === b.hostPort && addressesOverlap(a, b);
}

/** Whether two forwards' host addresses share an address (an unspecified address covers its family). */
function addressesOverlap(a: ForwardAddress, b: ForwardAddress): boolean {
  if (a.addr === null || b.addr === null) return true;
  if (a.family !== b.family) return false;
  const zero = (x: Uint8Array): boolean => x.every((v) => v === 0);
  return zero(a.addr) || zero(b.addr) || a.addr.every((v, i) => v === b.addr![i]);
}

function parseForwardSpec(proto: PortForward['proto'], whole: string): ParsedForward {
  const flag = FORWARD_FLAG[proto];
  const bad = (why?: string): UsageError =>
    new UsageError(
      `${flag} must be [ADDR:]HOSTPORT[:GUESTPORT][@GUEST] such as 8080, 8080:80, 127.0.0.1:8080:80, [::1]:2222:22, 8000-8010 or 2222:22@guest2` +
        ` (got ${show(whole)}${why !== undefined ? `: ${why}` : ''})`,
    );
  // @GUEST: which guest (guest1, guest2, ... in --socket order); the first when absent.
  const at = whole.lastIndexOf('@');
  const spec = at < 0 ? whole : whole.slice(0, at);
  const toGuest = at < 0 ? undefined : whole.slice(at + 1);
  if (toGuest !== undefined && !/^guest[1-9][0-9]?$/.test(toGuest)) throw bad(`"${toGuest}" is not a guest: guest1, guest2, ... in the order of --socket`);
  const parsed = parseForwardPorts(flag, spec, bad);
  return { ...parsed, spec: whole, ...(toGuest !== undefined ? { toGuest } : {}) };
}

function parseForwardPorts(flag: string, spec: string, bad: (why?: string) => UsageError): ParsedForward {
  let addrText: string | undefined;
  let ports: string[];
  if (spec.startsWith('[')) {
    const close = spec.indexOf(']');
    if (close < 0) throw bad('no ] after the IPv6 address');
    addrText = spec.slice(1, close);
    const rest = spec.slice(close + 1);
    if (!rest.startsWith(':')) throw bad('a port must follow the address, as in [::1]:8080');
    ports = rest.slice(1).split(':');
    if (ports.length > 2) throw bad('too many fields');
  } else {
    const parts = spec.split(':');
    // Three colons or a '::' can only be IPv6 (ADDR:HOST:GUEST has two, IPv6 needs '::' or seven).
    if (parts.length > 3 || spec.includes('::')) {
      throw new UsageError(`${flag}: write an IPv6 address in brackets, as in [::1]:2222:22 (got ${show(spec)})`);
    }
    if (parts.length === 3 || (parts.length === 2 && !PORTS_RE.test(parts[0] ?? ''))) {
      addrText = parts[0] ?? '';
      ports = parts.slice(1);
    } else {
      ports = parts;
    }
  }

  const host = parsePortRange(ports[0] ?? '', bad);
  const guest = ports[1] === undefined ? host : parsePortRange(ports[1], bad);
  if (rangeSize(guest) !== rangeSize(host)) {
    throw new UsageError(
      rangeSize(guest) === 1
        ? `${flag}: host range ${host.text} needs a guest range of the same length, or no guest port (got ${spec})`
        : `${flag}: guest range ${guest.text} has ${rangeSize(guest)} ports but host ${host.first === host.last ? 'port' : 'range'} ${host.text} has ${rangeSize(host)}: they must be the same length (got ${spec})`,
    );
  }
  if (addrText === undefined) return { spec, addr: null, family: 'any', host, guest };
  return { spec, ...parseForwardAddress(flag, addrText, spec, spec.startsWith('[')), host, guest };
}

/** A port or a port range as written in a forward spec. */
const PORTS_RE = /^[0-9]+(?:-[0-9]+)?$/;

function parsePortRange(text: string, bad: (why?: string) => UsageError): PortRange {
  if (!PORTS_RE.test(text)) throw bad(text === '' ? 'empty port' : `"${text}" is not a port or a range like 8000-8010`);
  const [a, b = a] = text.split('-');
  const first = Number(a);
  const last = Number(b);
  for (const p of [first, last]) if (p < 1 || p > 65535) throw bad(`port ${p} is not in 1..65535`);
  if (first > last) throw bad(`range ${text} runs backwards`);
  return { first, last, text };
}

function parseForwardAddress(flag: string, text: string, spec: string, bracketed: boolean): ForwardAddress {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (!bracketed && ipaddr.IPv4.isValidFourPartDecimal(text)) {
    addr = ipaddr.IPv4.parse(text);
  } else if (bracketed && ipaddr.IPv6.isValid(text)) {
    const v6 = ipaddr.IPv6.parse(text);
    if (v6.zoneId !== undefined) throw new UsageError(`${flag}: the address takes no zone (%${v6.zoneId}) (got ${spec})`);
    addr = v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
  } else {
    const want = bracketed ? 'an IPv6 address inside [ ]' : 'an IPv4 address such as 127.0.0.1 (IPv6 in brackets)';
    throw new UsageError(`${flag}: the address must be ${want} (got ${show(text)} in ${show(spec)})`);
  }
  const range = addr.range();
  if (range === 'multicast' || range === 'broadcast') {
    throw new UsageError(`${flag}: the address must be unicast or unspecified, not ${range} (got ${spec})`);
  }
  const bytes = Uint8Array.from(addr.toByteArray());
  return { addr: bytes, family: bytes.length === 4 ? 4 : 6 };
}

// ---------- --runas ----------

/** A user or group name as useradd accepts it (at most 32 characters, a trailing $ allowed). */
const ACCOUNT_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,30}\$?$/;

function parseRunAs(raw: string): RunAsSpec {
  const bad = (why: string): UsageError =>
    new UsageError(`--runas must be USER, UID, USER:GROUP or UID:GID such as nobody or 65534:65534 (got ${show(raw)}: ${why})`);
  const parts = raw.split(':');
  if (parts.length > 2) throw bad('more than one colon');
  const account = (text: string, what: string): string | number => {
    if (text === '') throw bad(`empty ${what}`);
    if (/^[0-9]+$/.test(text)) {
      const id = Number(text);
      // (uid_t)-1 means "unchanged" to the kernel; 0 is root, which --runas exists to leave.
      if (id > 4294967294) throw bad(`${what} ${text} is not a valid id`);
      if (id === 0) throw bad(`${what} 0 is root: name an unprivileged one`);
      return id;
    }
    if (!ACCOUNT_NAME.test(text)) throw bad(`"${text}" is not a ${what} name or number`);
    if (text === 'root') throw bad(`${what} root: name an unprivileged one`);
    return text;
  };
  const user = account(parts[0] ?? '', 'user');
  return parts[1] === undefined ? { user } : { user, group: account(parts[1], 'group') };
}

const dedupe = (xs: string[]): string[] => [...new Set(xs)];

const isLogLevel = (s: string): s is LogLevel => (LOG_LEVELS as readonly string[]).includes(s);

/** vunet's version from its package.json (found from this file in src/ or dist/src/). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'vunet' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here; look one level up
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}
