import t from 'tap';
import fc from 'fast-check';
import { defaultConfig, ipv6FromWords } from '../../src/iface/config.js';
import { buildProgram, forwardsCollide, HelpShown, MAX_FORWARDS, parseArgs, parseForwardSpecs, qemuBanner, UsageError } from '../../src/main/options.js';

const SOCK = ['--socket', '/tmp/vunet.sock'];
const v4 = (a: number, b: number, c: number, d: number): number => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

/** The UsageError parseArgs throws for argv (fails the test if it returns). */
function usageError(argv: string[]): UsageError {
  try {
    parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`accepted: ${argv.join(' ')}`);
}

t.test("defaults are slirp's: defaultConfig()", async (t) => {
  const o = parseArgs(SOCK);
  t.equal(o.socketPath, '/tmp/vunet.sock');
  t.strictSame(o.config, defaultConfig());
  t.equal(o.config.ipv4.gateway, v4(10, 0, 2, 2));
  t.equal(o.config.ipv4.dns, v4(10, 0, 2, 3));
  t.equal(o.config.ipv4.dhcpFirst, v4(10, 0, 2, 15));
  t.equal(o.config.ipv4.prefixLength, 24);
  t.strictSame(o.config.ipv6?.gateway, ipv6FromWords(0xfec0, 0, 0, 0, 0, 0, 0, 2));
  t.strictSame(o.config.ipv6?.dns, ipv6FromWords(0xfec0, 0, 0, 0, 0, 0, 0, 3));
  t.equal(o.config.mtu, 65520);
  t.equal(o.config.leaseTime, 86400);
  t.equal(o.config.guestMac, undefined);
  t.strictSame(o.config.searchDomains, []);
  t.strictSame(o.dnsUpstream, []);
  t.equal(o.pcapFile, undefined);
  t.notOk('pcapFile' in o);
  t.equal(o.logLevel, 'info');
  t.equal(o.udpTimeoutSec, 120);
  t.equal(o.tcpTimeWaitMs, 2000);
  t.equal(o.mapGateway, true);
  t.strictSame(o.forwards, []);
});

t.test('every option parsed', async (t) => {
  const o = parseArgs([
    '--socket',
    'rel/vu.sock',
    '--ipv4',
    '192.168.100.77/24',
    '--ipv6',
    'fd00:1:2:3::99/64',
    '--mtu',
    '9000',
    '--guest-mac',
    '52:54:00:AB:cd:01',
    '--dns',
    '1.1.1.1',
    '--dns',
    '2606:4700:4700:0:0:0:0:1111',
    '--search',
    'corp.example.com',
    '--search',
    'Example.ORG.',
    '--pcap',
    '/tmp/cap.pcap',
    '--log-level',
    'debug',
    '--udp-timeout',
    '30',
    '--no-map-gw',
    '--lease-time',
    '3600',
  ]);
  t.equal(o.socketPath, 'rel/vu.sock');
  t.strictSame(o.config.ipv4, {
    network: v4(192, 168, 100, 0),
    prefixLength: 24,
    gateway: v4(192, 168, 100, 2),
    dns: v4(192, 168, 100, 3),
    dhcpFirst: v4(192, 168, 100, 15),
    dhcpCount: 240,
  });
  t.strictSame(o.config.ipv6, {
    prefix: ipv6FromWords(0xfd00, 1, 2, 3),
    prefixLength: 64,
    gateway: ipv6FromWords(0xfd00, 1, 2, 3, 0, 0, 0, 2),
    dns: ipv6FromWords(0xfd00, 1, 2, 3, 0, 0, 0, 3),
  });
  t.equal(o.config.mtu, 9000);
  t.strictSame(o.config.guestMac, Uint8Array.of(0x52, 0x54, 0x00, 0xab, 0xcd, 0x01));
  t.strictSame(o.dnsUpstream, ['1.1.1.1', '2606:4700:4700::1111']);
  t.strictSame(o.config.searchDomains, ['corp.example.com', 'example.org']);
  t.equal(o.pcapFile, '/tmp/cap.pcap');
  t.equal(o.logLevel, 'debug');
  t.equal(o.udpTimeoutSec, 30);
  t.equal(o.mapGateway, false);
  t.equal(o.config.leaseTime, 3600);
  t.strictSame(o.config.mac, defaultConfig().mac, 'our MAC is not an option');
});

t.test('accepted values (table)', async (t) => {
  const cases: Array<[string, string[], (o: ReturnType<typeof parseArgs>) => unknown, unknown]> = [
    ['--ipv4 from any address in it', ['--ipv4', '10.0.2.200/24'], (o) => o.config.ipv4.network, v4(10, 0, 2, 0)],
    [
      '--ipv4 /28 (smallest)',
      ['--ipv4', '172.16.5.16/28'],
      (o) => [o.config.ipv4.gateway, o.config.ipv4.dhcpFirst, o.config.ipv4.dhcpCount],
      [v4(172, 16, 5, 18), v4(172, 16, 5, 20), 11],
    ],
    ['--ipv4 /8 (largest)', ['--ipv4', '10.0.0.0/8'], (o) => [o.config.ipv4.prefixLength, o.config.ipv4.dhcpCount], [8, 256]],
    ['--ipv4 public unicast', ['--ipv4', '203.0.113.0/24'], (o) => o.config.ipv4.network, v4(203, 0, 113, 0)],
    ['--ipv4 CGNAT', ['--ipv4', '100.64.0.0/16'], (o) => o.config.ipv4.gateway, v4(100, 64, 0, 2)],
    ['--ipv6 host bits dropped', ['--ipv6', 'fec0::1234:5678/64'], (o) => o.config.ipv6?.prefix, ipv6FromWords(0xfec0)],
    ['--ipv6 global', ['--ipv6', '2001:db8:1:2::/64'], (o) => o.config.ipv6?.gateway, ipv6FromWords(0x2001, 0xdb8, 1, 2, 0, 0, 0, 2)],
    ['--no-ipv6', ['--no-ipv6'], (o) => o.config.ipv6, undefined],
    ['--mtu 1280', ['--mtu', '1280'], (o) => o.config.mtu, 1280],
    ['--mtu 65520', ['--mtu', '65520'], (o) => o.config.mtu, 65520],
    ['--mtu 576 with --no-ipv6', ['--no-ipv6', '--mtu', '576'], (o) => o.config.mtu, 576],
    ['--guest-mac with dashes', ['--guest-mac', '02-00-00-00-00-01'], (o) => o.config.guestMac, Uint8Array.of(2, 0, 0, 0, 0, 1)],
    ['--dns IPv6 with zone', ['--dns', 'fe80::1%eth0'], (o) => o.dnsUpstream, ['fe80::1%eth0']],
    ['--dns loopback (systemd-resolved)', ['--dns', '127.0.0.53'], (o) => o.dnsUpstream, ['127.0.0.53']],
    ['--search one label', ['--search', 'lan'], (o) => o.config.searchDomains, ['lan']],
    ['--search 63-char label', ['--search', `${'a'.repeat(63)}.com`], (o) => o.config.searchDomains, [`${'a'.repeat(63)}.com`]],
    ['--log-level case-insensitive', ['--log-level', 'TRACE'], (o) => o.logLevel, 'trace'],
    ['--udp-timeout 1', ['--udp-timeout', '1'], (o) => o.udpTimeoutSec, 1],
    ['--tcp-time-wait 0', ['--tcp-time-wait', '0'], (o) => o.tcpTimeWaitMs, 0],
    ['--lease-time 60', ['--lease-time', '60'], (o) => o.config.leaseTime, 60],
    ['--socket 107 bytes', ['--socket', `/${'s'.repeat(106)}`], (o) => o.socketPath?.length, 107],
    ['--flag=value form', ['--mtu=1500'], (o) => o.config.mtu, 1500],
  ];
  for (const [name, args, get, want] of cases) {
    const argv = args.includes('--socket') ? args : [...SOCK, ...args];
    t.strictSame(get(parseArgs(argv)), want, name);
  }
});

t.test('repeated --dns and --search keep order and drop duplicates', async (t) => {
  const o = parseArgs([
    ...SOCK,
    '--dns',
    '9.9.9.9',
    '--dns',
    '2620:fe::fe',
    '--dns',
    '1.1.1.1',
    '--dns',
    '9.9.9.9',
    '--dns',
    '2620:FE:0::FE',
    '--search',
    'a.example',
    '--search',
    'b.example',
    '--search',
    'A.example.',
  ]);
  t.strictSame(o.dnsUpstream, ['9.9.9.9', '2620:fe::fe', '1.1.1.1']);
  t.strictSame(o.config.searchDomains, ['a.example', 'b.example']);
});

t.test('--no-ipv6', async (t) => {
  const o = parseArgs([...SOCK, '--no-ipv6']);
  t.equal(o.config.ipv6, undefined);
  t.strictSame(o.config.ipv4, defaultConfig().ipv4);
  t.equal(o.config.mtu, 65520);
  t.match(usageError([...SOCK, '--no-ipv6', '--ipv6', 'fd00::/64']).message, /--ipv6 and --no-ipv6/);
  t.match(usageError([...SOCK, '--ipv6', 'fd00::/64', '--no-ipv6']).message, /--ipv6 and --no-ipv6/);
});

t.test('invalid values are rejected with a one-line message naming the flag (table)', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    // --ipv4
    [['--ipv4', '10.0.2.0'], /^--ipv4 must be an IPv4 network in CIDR form such as 10\.0\.2\.0\/24 \(got 10\.0\.2\.0\)$/],
    [['--ipv4', 'fec0::/64'], /^--ipv4 must be an IPv4 network in CIDR form/],
    [['--ipv4', '10.0.2/24'], /^--ipv4 .*CIDR/],
    [['--ipv4', '0x0a.0.2.0/24'], /^--ipv4 .*CIDR/],
    [['--ipv4', '10.0.2.0/33'], /^--ipv4 .*CIDR/],
    [['--ipv4', '300.0.2.0/24'], /^--ipv4 .*CIDR/],
    [['--ipv4', ''], /^--ipv4 .*\(got ''\)/],
    [['--ipv4', '10.0.2.0/29'], /^--ipv4 prefix must be \/8 to \/28 .*\(got \/29\)$/],
    [['--ipv4', '10.0.2.0/32'], /^--ipv4 prefix must be \/8 to \/28/],
    [['--ipv4', '16.0.0.0/4'], /^--ipv4 prefix must be \/8 to \/28 .*\(got \/4\)$/],
    [['--ipv4', '224.0.0.0/24'], /^--ipv4 must be a unicast network .*multicast/],
    [['--ipv4', '239.1.2.0/24'], /^--ipv4 .*multicast/],
    [['--ipv4', '127.0.0.0/8'], /^--ipv4 .*loopback/],
    [['--ipv4', '127.5.0.0/24'], /^--ipv4 .*loopback/],
    [['--ipv4', '0.0.0.0/24'], /^--ipv4 .*this network/],
    [['--ipv4', '169.254.1.0/24'], /^--ipv4 .*link-local/],
    [['--ipv4', '240.0.0.0/24'], /^--ipv4 .*reserved/],
    [['--ipv4', '255.255.255.240/28'], /^--ipv4 .*broadcast/],
    // --ipv6
    [['--ipv6', 'fd00::/48'], /^--ipv6 prefix must be \/64, because guests configure their addresses by SLAAC.*\(got \/48\)$/],
    [['--ipv6', 'fd00::/80'], /^--ipv6 prefix must be \/64.*SLAAC/],
    [['--ipv6', 'fd00::'], /^--ipv6 must be a \/64 prefix such as fec0::\/64 \(got fd00::\)$/],
    [['--ipv6', '10.0.2.0/24'], /^--ipv6 must be a \/64 prefix/],
    [['--ipv6', 'fd00:::/64'], /^--ipv6 must be a \/64 prefix/],
    [['--ipv6', 'ff02::/64'], /^--ipv6 must be a unicast \/64 .*multicast/],
    [['--ipv6', 'fe80::/64'], /^--ipv6 .*link-local/],
    [['--ipv6', '::/64'], /^--ipv6 .*unspecified/],
    [['--ipv6', 'fe80::%eth0/64'], /^--ipv6 takes a prefix without a zone/],
    // --mtu
    [['--mtu', '70000'], /^--mtu must be between 1280 and 65520 \(got 70000\)$/],
    [['--mtu', '65521'], /^--mtu must be between 1280 and 65520 \(got 65521\)$/],
    [['--mtu', '1279'], /^--mtu must be between 1280 and 65520; down to 576 with --no-ipv6 \(got 1279\)$/],
    [['--mtu', '1500.5'], /^--mtu must be a whole number from 1280 to 65520 \(got 1500\.5\)$/],
    [['--mtu', 'big'], /^--mtu must be a whole number/],
    [['--mtu', '-1'], /^--mtu must be a whole number/],
    [['--mtu', '0x500'], /^--mtu must be a whole number/],
    [['--mtu', '1e4'], /^--mtu must be a whole number/],
    [['--mtu', ''], /^--mtu must be a whole number .*\(got ''\)$/],
    [['--no-ipv6', '--mtu', '575'], /^--mtu must be between 576 and 65520 \(got 575\)$/],
    // --guest-mac
    [['--guest-mac', '52:54:00:12:34'], /^--guest-mac must be six hex octets such as 52:54:00:12:34:56/],
    [['--guest-mac', '52:54:00:12:34:5g'], /^--guest-mac must be six hex octets/],
    [['--guest-mac', '52:54-00:12:34:56'], /^--guest-mac must be six hex octets/],
    [['--guest-mac', '525400123456'], /^--guest-mac must be six hex octets/],
    [['--guest-mac', '01:00:5e:00:00:01'], /^--guest-mac must be a unicast MAC/],
    [['--guest-mac', 'ff:ff:ff:ff:ff:ff'], /^--guest-mac must be a unicast MAC/],
    [['--guest-mac', '00:00:00:00:00:00'], /^--guest-mac must not be 00:00:00:00:00:00$/],
    [['--guest-mac', '52:55:0a:00:02:02'], /^--guest-mac must differ from vunet's own MAC 52:55:0a:00:02:02$/],
    // --dns
    [['--dns', 'dns.google'], /^--dns must be an IPv4 or IPv6 address .*\(got dns\.google\)$/],
    [['--dns', '8.8.8'], /^--dns must be an IPv4 or IPv6 address/],
    [['--dns', '8.8.8.8:53'], /^--dns must be an IPv4 or IPv6 address/],
    [['--dns', '1.1.1.1', '--dns', 'nope'], /^--dns .*\(got nope\)$/],
    [['--dns', '0.0.0.0'], /^--dns must be a unicast address \(got 0\.0\.0\.0, unspecified\)$/],
    [['--dns', '::'], /^--dns must be a unicast address/],
    [['--dns', '224.0.0.251'], /^--dns must be a unicast address .*multicast/],
    [['--dns', 'ff02::fb'], /^--dns must be a unicast address .*multicast/],
    [['--dns', '255.255.255.255'], /^--dns must be a unicast address .*broadcast/],
    // --search
    [['--search', ''], /^--search must be a domain name such as example\.com \(got '': empty\)$/],
    [['--search', '.'], /^--search .*empty/],
    [['--search', 'a..b'], /^--search .*empty label/],
    [['--search', '-a.com'], /^--search .*label "-a"/],
    [['--search', 'a-.com'], /^--search .*label "a-"/],
    [['--search', 'under_score.com'], /^--search .*under_score/],
    [['--search', 'sp ace.com'], /^--search /],
    [['--search', `${'a'.repeat(64)}.com`], /^--search .*label longer than 63/],
    [['--search', Array(64).fill('abc').join('.')], /^--search .*longer than 253/],
    [['--search', '10.0.2.3'], /^--search .*all digits/],
    [['--search', 'ok.example', '--search', 'bad!'], /^--search .*bad!/],
    // --log-level
    [['--log-level', 'verbose'], /^--log-level must be one of fatal, error, warn, info, debug, trace \(got verbose\)$/],
    [['--log-level', 'silent'], /^--log-level must be one of/],
    // --udp-timeout
    [['--udp-timeout', '0'], /^--udp-timeout must be between 1 and 86400 \(got 0\)$/],
    [['--udp-timeout', '86401'], /^--udp-timeout must be between 1 and 86400/],
    [['--udp-timeout', '2m'], /^--udp-timeout must be a whole number/],
    // --lease-time
    [['--lease-time', '59'], /^--lease-time must be between 60 and 31536000 \(got 59\)$/],
    [['--lease-time', '99999999999'], /^--lease-time must be between 60 and 31536000/],
    [['--lease-time', '1d'], /^--lease-time must be a whole number/],
    // --pcap, --socket
    [['--pcap', ''], /^--pcap needs a file name$/],
    [['--socket', ''], /^--socket needs a path/],
    [['--socket', `/${'s'.repeat(107)}`], /^--socket path is 108 bytes; Unix socket paths can be at most 107: use a shorter path$/],
  ];
  for (const [args, want] of cases) {
    const argv = args[0] === '--socket' ? args : [...SOCK, ...args];
    const err = usageError(argv);
    t.match(err.message, want, args.join(' '));
    t.notMatch(err.message, /\n/, `one line: ${args.join(' ')}`);
    t.equal(err.exitCode, 2);
    t.equal(err.name, 'UsageError');
  }
});

t.test("QEMU's backend conventions: --print-capabilities prints the JSON and nothing runs; --socket-path is --socket", async (t) => {
  for (const argv of [['--print-capabilities'], ['--print-capabilities', '--mtu', '1'], [...SOCK, '--print-capabilities', '--bogus']]) {
    let out = '';
    t.throws(() => parseArgs(argv, { writeOut: (s) => (out += s) }), HelpShown, `${argv.join(' ')}: exits 0`);
    t.same(JSON.parse(out), { type: 'net' }, 'the vhost-user.json capabilities of a net backend, whatever else the line says');
  }
  t.equal(parseArgs(['--socket-path', '/tmp/a.sock']).socketPath, '/tmp/a.sock', '--socket-path');
  t.throws(() => parseArgs(['--socket-path', '/tmp/a.sock', ...SOCK]), /--socket and --socket-path name the same thing/);
});

t.test('structural errors from commander become one-line UsageErrors', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /^--socket PATH is required: the vhost-user socket QEMU connects to \(see vunet --help\)$/],
    [['--mtu', '1500'], /^--socket PATH is required/],
    [[...SOCK, '--bogus'], /^unknown option '--bogus' \(see vunet --help\)$/],
    [['--bogus'], /^unknown option '--bogus' \(see vunet --help\)$/], // said before the missing --socket
    [[...SOCK, '--mt', '1500'], /^unknown option '--mt': did you mean --mtu\? \(see vunet --help\)$/],
    [[...SOCK, '-x'], /^unknown option '-x'/],
    [[...SOCK, '--mtu'], /^option '--mtu <bytes>' argument missing \(see vunet --help\)$/],
    [['--socket'], /^option '--socket <path>' argument missing/],
    [[...SOCK, 'stray'], /^unexpected argument 'stray': vunet takes options only \(see vunet --help\)$/],
    [[...SOCK, '--no-map-gw=1'], /^unknown option '--no-map-gw=1'/],
  ];
  for (const [argv, want] of cases) {
    const err = usageError(argv);
    t.match(err.message, want, argv.join(' ') || '(no arguments)');
    t.notMatch(err.message, /\n/);
    t.equal(err.exitCode, 2);
  }
});

t.test('--help and --version print and throw HelpShown (exit 0)', async (t) => {
  let out = '';
  const write = (s: string): void => void (out += s);
  const help = t.throws(() => parseArgs(['--help'], { writeOut: write })) as HelpShown;
  t.type(help, HelpShown);
  t.equal(help.exitCode, 0);
  t.match(out, /^Usage: vunet --socket PATH \[options\]/);
  for (const flag of [
    '-t, --tcp-forward',
    '-u, --udp-forward',
    '--socket',
    '--ipv4',
    '--ipv6',
    '--no-ipv6',
    '--mtu',
    '--guest-mac',
    '--dns',
    '--search',
    '--pcap',
    '--log-level',
    '--udp-timeout',
    '--no-map-gw',
    '--lease-time',
    '--version',
    '--help',
  ]) {
    t.match(out, flag, `help lists ${flag}`);
  }
  for (const d of ['default: 10.0.2.0/24', 'default: fec0::/64', 'default: 65520', 'default: info', 'default: 120', 'default: 86400']) {
    t.match(out.replace(/\s+/g, ' '), d, `help shows ${d}`);
  }
  t.match(out, /qemu-system-x86_64 .*\n.*memory-backend-memfd,.*share=on/);
  t.match(out, /Port forwards: -t 2222:22 .*\n.*-t \[::1\]:2222:22/);
  t.match(out, /-chardev socket,id=c0,path=\/tmp\/vunet\.sock.*\n.*-netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0/);
  t.ok(out.startsWith(buildProgram().helpInformation()), 'the text of buildProgram()');

  out = '';
  t.throws(() => parseArgs([...SOCK, '-h'], { writeOut: write }), HelpShown);
  t.match(out, /^Usage:/);

  out = '';
  const ver = t.throws(() => parseArgs(['--version'], { writeOut: write })) as HelpShown;
  t.type(ver, HelpShown);
  t.match(out, /^\d+\.\d+\.\d+\n$/);
});

t.test('property: any address/prefix inside 10.0.0.0/8 gives a clean network', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 8, max: 28 }), (host, prefix) => {
      const addr = (0x0a000000 | host) >>> 0;
      const text = `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${prefix}`;
      const { ipv4 } = parseArgs([...SOCK, '--ipv4', text]).config;
      const mask = (~0 << (32 - prefix)) >>> 0;
      return (
        ipv4.network === (addr & mask) >>> 0 &&
        ipv4.prefixLength === prefix &&
        ipv4.gateway === ipv4.network + 2 &&
        ipv4.dns === ipv4.network + 3 &&
        ipv4.dhcpFirst + ipv4.dhcpCount <= ipv4.network + 2 ** (32 - prefix) - 1
      );
    }),
  );
  t.pass('network, gateway, DNS and pool derived for every case');
});

t.test('property: --mtu accepted exactly within its range', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 100000 }), fc.boolean(), (mtu, v6) => {
      const argv = [...SOCK, '--mtu', String(mtu), ...(v6 ? [] : ['--no-ipv6'])];
      const lo = v6 ? 1280 : 576;
      if (mtu >= lo && mtu <= 65520) return parseArgs(argv).config.mtu === mtu;
      return usageError(argv).message === `--mtu must be between ${lo} and 65520${v6 && mtu < lo ? '; down to 576 with --no-ipv6' : ''} (got ${mtu})`;
    }),
  );
  t.pass('range and message hold for every case');
});

// ---------- port forwards ----------

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const LO6 = bytes(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
type Fwd = ReturnType<typeof parseArgs>['forwards'][number];
const fwd = (proto: Fwd['proto'], hostPort: number, guestPort: number, family: Fwd['family'] = 'any', addr: Uint8Array | null = null): Fwd => ({
  proto,
  addr,
  family,
  hostPort,
  guestPort,
});
const forwards = (...args: string[]): Fwd[] => parseArgs([...SOCK, ...args]).forwards;

t.test('port forwards: accepted specs (table)', async (t) => {
  const cases: Array<[string[], Fwd[]]> = [
    [['-t', '8080'], [fwd('tcp', 8080, 8080)]],
    [['--tcp-forward', '8080:80'], [fwd('tcp', 8080, 80)]],
    [['--tcp-forward=2222:22'], [fwd('tcp', 2222, 22)]],
    [['-t2222:22'], [fwd('tcp', 2222, 22)]],
    [['-u', '5353:53'], [fwd('udp', 5353, 53)]],
    [['-t', '127.0.0.1:8080'], [fwd('tcp', 8080, 8080, 4, bytes(127, 0, 0, 1))]],
    [['-t', '127.0.0.1:8080:80'], [fwd('tcp', 8080, 80, 4, bytes(127, 0, 0, 1))]],
    [['-t', '0.0.0.0:80'], [fwd('tcp', 80, 80, 4, bytes(0, 0, 0, 0))]],
    [['-t', '[::1]:2222:22'], [fwd('tcp', 2222, 22, 6, LO6)]],
    [['-t', '[::1]:2222'], [fwd('tcp', 2222, 2222, 6, LO6)]],
    [['-t', '[::]:2222'], [fwd('tcp', 2222, 2222, 6, new Uint8Array(16))]],
    [['-t', '[fd00:0::abcd]:1'], [fwd('tcp', 1, 1, 6, bytes(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd))]],
    [['-t', '[::ffff:127.0.0.1]:8080'], [fwd('tcp', 8080, 8080, 4, bytes(127, 0, 0, 1))]],
    [['-t', '1:65535'], [fwd('tcp', 1, 65535)]],
    [
      ['-t', '8000-8002'],
      [fwd('tcp', 8000, 8000), fwd('tcp', 8001, 8001), fwd('tcp', 8002, 8002)],
    ],
    [
      ['-t', '8000-8001:9000-9001'],
      [fwd('tcp', 8000, 9000), fwd('tcp', 8001, 9001)],
    ],
    [
      ['-u', '[::1]:6000-6001:7000-7001'],
      [fwd('udp', 6000, 7000, 6, LO6), fwd('udp', 6001, 7001, 6, LO6)],
    ],
    [['-t', '80-80:81'], [fwd('tcp', 80, 81)]],
    [['-t', '80:81-81'], [fwd('tcp', 80, 81)]],
    // The same port on both protocols, or on distinct addresses, is fine.
    [
      ['-u', '53', '-t', '53'],
      [fwd('tcp', 53, 53), fwd('udp', 53, 53)],
    ],
    [
      ['-t', '127.0.0.1:80', '-t', '127.0.0.2:80'],
      [fwd('tcp', 80, 80, 4, bytes(127, 0, 0, 1)), fwd('tcp', 80, 80, 4, bytes(127, 0, 0, 2))],
    ],
    [
      ['-t', '0.0.0.0:80', '-t', '[::]:80'],
      [fwd('tcp', 80, 80, 4, bytes(0, 0, 0, 0)), fwd('tcp', 80, 80, 6, new Uint8Array(16))],
    ],
    [
      ['-t', '8000-8001', '-t', '8002'],
      [fwd('tcp', 8000, 8000), fwd('tcp', 8001, 8001), fwd('tcp', 8002, 8002)],
    ],
  ];
  for (const [args, want] of cases) t.strictSame(forwards(...args), want, args.join(' '));
});

t.test('port forwards: TCP first, then UDP, each in the order given', async (t) => {
  const got = forwards('-u', '1', '-t', '3', '-u', '2', '-t', '4');
  t.strictSame(
    got.map((f) => `${f.proto}:${f.hostPort}`),
    ['tcp:3', 'tcp:4', 'udp:1', 'udp:2'],
  );
});

t.test('port forwards: each entry owns its address bytes', async (t) => {
  const [a, b] = forwards('-t', '127.0.0.1:80-81');
  t.not(a?.addr, b?.addr);
  t.strictSame(a?.addr, b?.addr);
});

t.test(`port forwards: at most ${MAX_FORWARDS} ports in all`, async (t) => {
  t.equal(forwards('-t', '1-512', '-u', '1-512').length, MAX_FORWARDS);
  t.equal(forwards('-t', `1-${MAX_FORWARDS}`).length, MAX_FORWARDS);
  t.match(
    usageError([...SOCK, '-t', '1-512', '-u', '1-513']).message,
    new RegExp(`^--tcp-forward and --udp-forward may forward at most ${MAX_FORWARDS} ports in all \\(got 1025\\): use smaller ranges$`),
  );
  t.match(usageError([...SOCK, '-t', '1-65535']).message, /at most 1024 ports in all \(got 65535\)/);
});

t.test('port forwards: invalid specs are one-line UsageErrors (table)', async (t) => {
  const FORM = String.raw`must be \[ADDR:\]HOSTPORT\[:GUESTPORT\]\[@GUEST\] such as 8080, 8080:80, 127\.0\.0\.1:8080:80, \[::1\]:2222:22, 8000-8010 or 2222:22@guest2`;
  const cases: Array<[string[], RegExp]> = [
    [['-t', ''], new RegExp(`^--tcp-forward ${FORM} \\(got '': empty port\\)$`)],
    [['-u', 'x'], new RegExp(`^--udp-forward ${FORM} \\(got x: "x" is not a port or a range like 8000-8010\\)$`)],
    [['-t', '0'], /^--tcp-forward must be .*\(got 0: port 0 is not in 1\.\.65535\)$/],
    [['-t', '65536'], /\(got 65536: port 65536 is not in 1\.\.65535\)$/],
    [['-t', '80:0'], /\(got 80:0: port 0 is not in 1\.\.65535\)$/],
    [['-t', '99999999999999999999'], /is not in 1\.\.65535/],
    [['-t', '80:'], /\(got 80:: empty port\)$/],
    [['-t', '127.0.0.1:'], /\(got 127\.0\.0\.1:: empty port\)$/],
    [['-t', '127.0.0.1'], /"127\.0\.0\.1" is not a port/],
    [['-t', '-80'], /"-80" is not a port/],
    [['-t', '+80'], /"\+80" is not a port/],
    [['-t', '80-'], /"80-" is not a port/],
    [['-t', '8010-8000'], /\(got 8010-8000: range 8010-8000 runs backwards\)$/],
    [['-t', '8000-8010:80'], /^--tcp-forward: host range 8000-8010 needs a guest range of the same length, or no guest port \(got 8000-8010:80\)$/],
    [
      ['-t', '8000-8010:80-81'],
      /^--tcp-forward: guest range 80-81 has 2 ports but host range 8000-8010 has 11: they must be the same length \(got 8000-8010:80-81\)$/,
    ],
    [['-t', '8000:80-81'], /^--tcp-forward: guest range 80-81 has 2 ports but host port 8000 has 1/],
    [['-t', '1.2.3.4:80:81:82'], /^--tcp-forward: write an IPv6 address in brackets, as in \[::1\]:2222:22 \(got 1\.2\.3\.4:80:81:82\)$/],
    [['-t', '::1:2222:22'], /^--tcp-forward: write an IPv6 address in brackets, as in \[::1\]:2222:22 \(got ::1:2222:22\)$/],
    [['-t', '::1:2222'], /^--tcp-forward: write an IPv6 address in brackets/],
    [['-u', 'fe80::1:53'], /^--udp-forward: write an IPv6 address in brackets/],
    [['-t', '::'], /write an IPv6 address in brackets/],
    [
      ['-t', 'localhost:80'],
      /^--tcp-forward: the address must be an IPv4 address such as 127\.0\.0\.1 \(IPv6 in brackets\) \(got localhost in localhost:80\)$/,
    ],
    [['-t', '127.1:80'], /the address must be an IPv4 address/],
    [['-t', '300.0.0.1:80'], /the address must be an IPv4 address/],
    [['-t', ':80'], /the address must be an IPv4 address .*\(got '' in :80\)$/],
    [['-t', '[127.0.0.1]:80'], /^--tcp-forward: the address must be an IPv6 address inside \[ \] \(got 127\.0\.0\.1 in \[127\.0\.0\.1\]:80\)$/],
    [['-t', '[::1:80'], /\(got \[::1:80: no \] after the IPv6 address\)$/],
    [['-t', '[::1]80'], /\(got \[::1\]80: a port must follow the address, as in \[::1\]:8080\)$/],
    [['-t', '[::1]'], /a port must follow the address/],
    [['-t', '[::1]:1:2:3'], /\(got \[::1\]:1:2:3: too many fields\)$/],
    [['-t', '[fe80::1%eth0]:80'], /^--tcp-forward: the address takes no zone \(%eth0\)/],
    [['-t', '224.0.0.1:80'], /^--tcp-forward: the address must be unicast or unspecified, not multicast/],
    [['-t', '255.255.255.255:80'], /not broadcast/],
    [['-t', '[ff02::1]:80'], /not multicast/],
    // The same host port twice on overlapping addresses of one protocol.
    [['-t', '80', '-t', '80:81'], /^--tcp-forward: host port 80 is forwarded twice \(80 and 80:81\)$/],
    [['-t', '8000-8010', '-t', '8005'], /^--tcp-forward: host port 8005 is forwarded twice \(8000-8010 and 8005\)$/],
    [['-t', '8005', '-t', '8000-8010'], /host port 8005 is forwarded twice \(8005 and 8000-8010\)/],
    [['-t', '8000-8010', '-t', '8008-8020'], /host port 8008 is forwarded twice/],
    [['-u', '127.0.0.1:53', '-u', '53'], /^--udp-forward: host port 53 is forwarded twice \(127\.0\.0\.1:53 and 53\)$/],
    [['-t', '0.0.0.0:80', '-t', '127.0.0.1:80'], /host port 80 is forwarded twice/],
    [['-t', '[::1]:80', '-t', '[0::1]:80:81'], /host port 80 is forwarded twice/],
    [['-t', '[::]:80', '-t', '[::1]:80'], /host port 80 is forwarded twice/],
  ];
  for (const [args, want] of cases) {
    const err = usageError([...SOCK, ...args]);
    t.match(err.message, want, args.join(' '));
    t.notMatch(err.message, /\n/, `one line: ${args.join(' ')}`);
    t.equal(err.exitCode, 2);
  }
});

t.test('property: a host range maps onto an equally long guest range, port by port', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 65535 }),
      fc.integer({ min: 1, max: 65535 }),
      fc.integer({ min: 0, max: 200 }),
      fc.constantFrom('tcp' as const, 'udp' as const),
      (host, guest, extra, proto) => {
        const n = Math.min(extra, 65535 - host, 65535 - guest);
        const spec = `${host}-${host + n}:${guest}-${guest + n}`;
        const got = forwards(proto === 'tcp' ? '-t' : '-u', spec);
        return (
          got.length === n + 1 &&
          got.every((f, i) => f.proto === proto && f.hostPort === host + i && f.guestPort === guest + i && f.addr === null && f.family === 'any')
        );
      },
    ),
  );
  t.pass('every port of the range forwarded to its counterpart');
});

t.test('--max-memory, --deny-host, --deny', async (t) => {
  const d = parseArgs(SOCK);
  t.equal(d.maxMemory, 256 * 1024 ** 2, 'default 256 MiB');
  t.equal(d.denyHost, false);
  t.strictSame(d.deny, []);
  t.equal(parseArgs([...SOCK, '--max-memory', '1G']).maxMemory, 1024 ** 3);
  t.equal(parseArgs([...SOCK, '--max-memory', '64m']).maxMemory, 64 * 1024 ** 2);
  t.equal(parseArgs([...SOCK, '--max-memory', '33554432']).maxMemory, 32 * 1024 ** 2);
  const o = parseArgs([...SOCK, '--deny-host', '--deny', '192.168.0.0/16', '--deny', 'fd00::/8', '--deny', '203.0.113.7']);
  t.equal(o.denyHost, true);
  t.strictSame(
    o.deny.map((c) => [c.family, [...c.addr], c.prefixLength]),
    [
      [4, [192, 168, 0, 0], 16],
      [6, [0xfd, ...new Array<number>(15).fill(0)], 8],
      [4, [203, 0, 113, 7], 32],
    ],
  );
  for (const [argv, re] of [
    [['--max-memory', '1M'], /^--max-memory must be a size from 16M to 64G, such as 256M or 1G \(got 1M\)$/],
    [['--max-memory', '100G'], /^--max-memory must be a size/],
    [['--max-memory', 'lots'], /^--max-memory must be a size/],
    [['--deny', '192.168.1.1/16'], /^--deny must be .*host bits set after \/16/],
    [['--deny', 'fe80::1%eth0'], /^--deny .*no zones/],
    [['--deny', 'nowhere'], /^--deny .*not an address or prefix/],
    [['--deny', '::ffff:10.0.0.0/104'], /^--deny .*IPv4 prefixes in IPv4/],
  ] as Array<[string[], RegExp]>) {
    t.match(usageError([...SOCK, ...argv]).message, re, argv.join(' '));
  }
});

t.test('the QEMU arguments: vectors=0 only on the line for TCG, the memory size left to the user', async (t) => {
  const banner = qemuBanner('/run/vunet/a,b.sock');
  const lines = banner.split('\n');
  t.match(lines[0], /^Start QEMU with /);
  t.match(banner, '-m $MEM -object memory-backend-memfd,id=mem,size=$MEM,share=on -numa node,memdev=mem');
  t.notMatch(banner, /\d+M\b/, 'no made-up memory size');
  t.match(banner, 'path=/run/vunet/a,,b.sock,reconnect=1', "a comma in the path doubled, as QEMU's option syntax wants");
  const withVectors = lines.filter((l) => l.includes('vectors=0'));
  t.same(withVectors, ['    -device virtio-net-pci,netdev=net0,vectors=0'], 'one device line with vectors=0');
  const before = lines[lines.indexOf(withVectors[0]!) - 1]!;
  t.match(before, /TCG/, 'said to be for TCG');
  t.match(before, /only there/);
  t.ok(lines.includes('    -device virtio-net-pci,netdev=net0'), 'the device line for KVM keeps MSI-X');

  let help = '';
  t.throws(() => parseArgs(['--help'], { writeOut: (s) => void (help += s) }));
  t.match(help, 'qemu-system-x86_64 -accel kvm -m $MEM');
  t.match(help, /-device virtio-net-pci,netdev=n0 \.\.\./, 'the KVM example without vectors=0');
  t.match(help, /TCG[^\n]*only there, use:\n\s+-device virtio-net-pci,netdev=n0,vectors=0\n/, 'vectors=0 under the TCG note');
});

t.test('--control: beside the socket by default, none with --fd unless named, --no-control, bounds', async (t) => {
  t.equal(parseArgs(['--socket', '/tmp/v.sock']).controlPath, '/tmp/v.sock.ctl', 'default: <socket>.ctl');
  t.equal(parseArgs(['--socket', '/tmp/v.sock', '--control', '/run/c']).controlPath, '/run/c');
  t.equal(parseArgs(['--socket', '/tmp/v.sock', '--no-control']).controlPath, undefined, '--no-control');
  t.equal(parseArgs(['--fd', '3']).controlPath, undefined, 'a given socket: no path to put it beside, so none');
  t.equal(parseArgs(['--fd', '3', '--control', '/run/c']).controlPath, '/run/c', '... unless --control names one');
  t.equal(parseArgs([], {}, 3).controlPath, undefined, 'socket activation likewise');
  t.throws(() => parseArgs(['--socket', '/tmp/v.sock', '--control', '/tmp/v.sock']), /--control and --socket name the same path/);
  t.throws(() => parseArgs(['--socket', '/tmp/v.sock', '--control', '']), /--control needs a path/);
  const long = `/tmp/${'x'.repeat(100)}`; // fits as --socket (105 bytes), not with .ctl added
  const o = parseArgs(['--socket', long]);
  t.equal(o.controlPath, undefined, 'a --socket path that fits only just: no control socket');
  t.match(o.controlWarning, /^no control socket: .*\.ctl would be longer than 107 bytes \(name one with --control\)$/);
  t.throws(() => parseArgs(['--socket', '/tmp/v', '--control', long + '.ctl']), /--control path is 109 bytes/);
});

t.test('parseForwardSpecs and forwardsCollide: what vunet ctl add and remove use', async (t) => {
  t.same(
    parseForwardSpecs('udp', '127.0.0.1:5000-5001:6000-6001').map((f) => [f.proto, f.family, f.hostPort, f.guestPort]),
    [
      ['udp', 4, 5000, 6000],
      ['udp', 4, 5001, 6001],
    ],
  );
  t.throws(() => parseForwardSpecs('tcp', '8080:'), /^--tcp-forward must be \[ADDR:\]HOSTPORT\[:GUESTPORT\]/, 'the same error as the flag');
  const [any] = parseForwardSpecs('tcp', '8080');
  const [lo] = parseForwardSpecs('tcp', '127.0.0.1:8080:80');
  const [lo6] = parseForwardSpecs('tcp', '[::1]:8080');
  const [udp] = parseForwardSpecs('udp', '8080');
  t.ok(forwardsCollide(any!, lo!), 'every address covers 127.0.0.1');
  t.notOk(forwardsCollide(lo!, lo6!), 'IPv4 and IPv6 loopback do not collide');
  t.notOk(forwardsCollide(any!, udp!), 'TCP and UDP do not collide');
  t.notOk(forwardsCollide(any!, parseForwardSpecs('tcp', '8081')[0]!), 'other ports do not');
});

t.test('several guests: --socket repeated; a forward names its guest with @guestN', async (t) => {
  const o = parseArgs(['--socket', '/tmp/a.sock', '--socket', '/tmp/b.sock', '-t', '2222:22@guest2', '-u', '5353']);
  t.equal(o.socketPath, '/tmp/a.sock');
  t.same(o.moreSockets, ['/tmp/b.sock']);
  t.same(
    o.forwards.map((f) => [f.proto, f.hostPort, f.guestPort, f.guest]),
    [
      ['tcp', 2222, 22, 'guest2'],
      ['udp', 5353, 5353, undefined],
    ],
  );
  t.equal(parseArgs(['--socket', '/tmp/a.sock']).moreSockets, undefined, 'one guest: none more');
  t.throws(() => parseArgs(['--socket', '/tmp/a.sock', '-t', '2222:22@guest2']), /--tcp-forward \.\.\.@guest2: there is one guest \(one per --socket\)/);
  t.throws(() => parseArgs(['--socket', '/tmp/a.sock', '-t', '2222:22@db']), /"db" is not a guest: guest1, guest2/);
  t.throws(() => parseArgs(['--socket', '/tmp/a.sock', '--socket', '/tmp/a.sock']), /--socket \/tmp\/a\.sock is given twice/);
  t.throws(() => parseArgs(Array.from({ length: 17 }, (_, i) => ['--socket', `/tmp/${i}.sock`]).flat()), /at most 16 guests/);
});
