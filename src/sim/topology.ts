// A simulated network's description, and its checks: routers and hosts that live inside vunet,
// joined by links, behind the guest's gateway. The same objects come from a YAML file
// (topology-file.ts) or from TypeScript (library use: `buildTopology(spec)`).
//
// Decisions:
// - Nodes are named; `gateway` is vunet itself (the guest's router), the one node every path starts
//   from. Links are undirected; each direction has its own queue.
// - Routing: every node's addresses (and a router's `unreachable` prefixes) are the routes; a
//   destination goes to the longest prefix that covers it, and hop by hop along the fewest links
//   to that prefix's node (ties broken by the order links are listed). Paths back to the guest
//   are the same links in reverse.
// - Addresses: IPv4 or IPv6, several per node; a node answers on each. ICMP errors a router sends
//   come from its first address of the packet's family (a router without one sends none).
// - Times are ms (numbers, or strings with ms / s / us); rates bit/s (numbers, or kbit / mbit /
//   gbit); loss in percent (a number, or a string ending in %).
import ipaddr from 'ipaddr.js';
import type { Inany } from '../wire/index.js';
import { inanyBytes, inanyFamily, inanyFrom, inanyIsV4 } from '../wire/index.js';

/** What a service on a simulated host does. */
export type ServiceKind = 'echo' | 'discard' | 'http';

export interface ServiceSpec {
  /** The port and protocol: exactly one of tcp and udp. */
  tcp?: number;
  udp?: number;
  serve: ServiceKind;
  /** http: the response body (default: a line naming the host), or a file whose bytes are the
   *  body (a path relative to the topology file; read when the topology is built). */
  body?: string;
  file?: string;
  /** http: the Content-Type (default text/plain). */
  contentType?: string;
}

export interface PortSpec {
  tcp?: number;
  udp?: number;
}

export interface HostSpec {
  addresses: string[];
  services?: ServiceSpec[];
  /** Ports that answer "communication administratively prohibited" (a REJECT rule). */
  filtered?: PortSpec[];
  /** Ports that drop everything (a DROP rule): the sender hears nothing. */
  silent?: PortSpec[];
  /** A host that is down: the router before it answers host unreachable once neighbour
   *  resolution fails (after resolveMs). */
  down?: boolean;
}

export interface RouterSpec {
  addresses: string[];
  /** Prefixes this router has no route to: net unreachable from here. */
  unreachable?: string[];
  /** ICMP error rate limits, with Linux's names and defaults (net.ipv4.icmp_ratelimit, ms per
   *  error per destination with a burst of 6; icmp_msgs_per_sec and icmp_msgs_burst, all
   *  destinations). 0 turns a limit off. */
  icmpRatelimit?: number | string;
  icmpMsgsPerSec?: number;
  icmpMsgsBurst?: number;
}

export interface LinkSpec {
  /** The two nodes it joins. */
  between: [string, string];
  /** One-way delay, and its jitter (uniform in ±jitter), ms or a duration string. */
  delay?: number | string;
  jitter?: number | string;
  /** Chance of losing each packet, each way, in percent. */
  loss?: number | string;
  /** Bit rate each way (serialization delay and queueing); default unlimited. */
  rate?: number | string;
  /** Largest packet it carries (default 65535, bounded below by 576; IPv6 needs 1280). */
  mtu?: number;
}

export interface TopologySpec {
  /** Seeds the loss and jitter draws: the same file gives the same draws. */
  seed?: number;
  /** Whether destinations the topology does not claim go out through the NAT (default true); with
   *  false they get net unreachable from the gateway, so a test never leaves the machine. */
  nat?: boolean;
  routers?: Record<string, RouterSpec>;
  hosts?: Record<string, HostSpec>;
  links?: LinkSpec[];
  /** How long a router takes to give up resolving a host that is down, ms (default 3000, as
   *  Linux: three solicitations a second apart). */
  resolveMs?: number | string;
}

/** A problem with a spec: the path of the offending value, and what is wrong. */
export class TopologyError extends Error {
  constructor(
    readonly path: readonly (string | number)[],
    readonly problem: string,
  ) {
    super(`${path.length > 0 ? path.join('.') : 'topology'}: ${problem}`);
    this.name = 'TopologyError';
  }
}

// ---- the checked, resolved form ----

export interface SimService {
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
  readonly serve: ServiceKind;
  readonly body: Uint8Array;
  readonly contentType: string;
}

export interface SimNode {
  readonly name: string;
  readonly kind: 'gateway' | 'router' | 'host';
  readonly index: number;
  readonly addresses: readonly Inany[];
  /** The first address of each family (ICMP errors' source). */
  readonly source4: Inany | undefined;
  readonly source6: Inany | undefined;
  readonly services: readonly SimService[];
  readonly filtered: ReadonlySet<string>;
  readonly silent: ReadonlySet<string>;
  readonly down: boolean;
  readonly ratelimitMs: number;
  readonly msgsPerSec: number;
  readonly msgsBurst: number;
  /** Links at this node, and the neighbour at the other end. */
  readonly links: SimLink[];
}

export interface SimLink {
  readonly a: SimNode;
  readonly b: SimNode;
  readonly delayMs: number;
  readonly jitterMs: number;
  /** 0..1 */
  readonly loss: number;
  /** bit/s; Infinity: no serialization delay. */
  readonly rate: number;
  readonly mtu: number;
}

/** A route: a prefix and the node it leads to (`unreachable`: that router has no route on). */
export interface SimRoute {
  readonly family: 4 | 6;
  /** The prefix's bytes (4 or 16) and length. */
  readonly prefix: Uint8Array;
  readonly length: number;
  readonly node: SimNode;
  readonly unreachable: boolean;
}

export interface Topology {
  readonly seed: number;
  readonly nat: boolean;
  readonly resolveMs: number;
  readonly nodes: readonly SimNode[];
  readonly gateway: SimNode;
  readonly links: readonly SimLink[];
  /** Longest prefix first. */
  readonly routes: readonly SimRoute[];
  /** nextHop[from][to]: the link to take from node `from` toward node `to` (undefined: none, or
   *  from === to). */
  readonly nextHop: readonly (readonly (SimLink | undefined)[])[];
}

/** Reads a service's `file` (at most `max` bytes; more is an error). */
export type ReadBodyFile = (path: string, max: number) => Uint8Array;

export interface BuildOptions {
  /** How `file:` bodies are read (the topology file's loader gives one; without it, `file` is an
   *  error). */
  readFile?: ReadBodyFile;
}

const UTF8 = new TextEncoder();
const NAME = /^[a-z][a-z0-9-]{0,31}$/i;
const MAX_NODES = 256;
const MAX_LINKS = 1024;
const MAX_SERVICES = 64;
const MAX_BODY = 1024 * 1024;

/** Checks a spec and resolves it: addresses parsed, routes and paths computed. Throws a
 *  TopologyError naming the first problem's path. */
export function buildTopology(spec: unknown, opts: BuildOptions = {}): Topology {
  const s = object(spec, []);
  known(s, ['seed', 'nat', 'routers', 'hosts', 'links', 'resolveMs'], []);
  const seed = s.seed === undefined ? 1 : integer(s.seed, ['seed'], 0, 0xffffffff);
  const nat = s.nat === undefined ? true : boolean(s.nat, ['nat']);
  const resolveMs = s.resolveMs === undefined ? 3000 : duration(s.resolveMs, ['resolveMs'], 60_000);
  const nodes: SimNode[] = [];
  const byName = new Map<string, SimNode>();
  const owners = new Map<string, string>();
  const add = (n: SimNode, path: (string | number)[]): void => {
    if (byName.has(n.name)) throw new TopologyError(path, `the name ${n.name} is used twice`);
    if (nodes.length >= MAX_NODES) throw new TopologyError(path, `at most ${MAX_NODES} nodes`);
    byName.set(n.name, n);
    nodes.push(n);
  };
  const gateway = node('gateway', 'gateway', 0, [], [], {});
  add(gateway, []);
  const routers = s.routers === undefined ? {} : object(s.routers, ['routers']);
  for (const [name, raw] of Object.entries(routers)) {
    const path = ['routers', name];
    if (!NAME.test(name) || name === 'gateway') throw new TopologyError(path, 'a name is letters, digits and -, at most 32, not "gateway"');
    const r = object(raw, path);
    known(r, ['addresses', 'unreachable', 'icmpRatelimit', 'icmpMsgsPerSec', 'icmpMsgsBurst'], path);
    const addrs = addresses(r.addresses, [...path, 'addresses'], owners, name);
    add(node(name, 'router', nodes.length, addrs, [], r, path), path);
  }
  const hosts = s.hosts === undefined ? {} : object(s.hosts, ['hosts']);
  for (const [name, raw] of Object.entries(hosts)) {
    const path = ['hosts', name];
    if (!NAME.test(name) || name === 'gateway') throw new TopologyError(path, 'a name is letters, digits and -, at most 32, not "gateway"');
    const h = object(raw, path);
    known(h, ['addresses', 'services', 'filtered', 'silent', 'down'], path);
    const addrs = addresses(h.addresses, [...path, 'addresses'], owners, name);
    add(node(name, 'host', nodes.length, addrs, services(h.services, [...path, 'services'], name, opts.readFile), h, path), path);
  }
  // Links.
  const links: SimLink[] = [];
  const rawLinks = s.links === undefined ? [] : array(s.links, ['links']);
  if (rawLinks.length > MAX_LINKS) throw new TopologyError(['links'], `at most ${MAX_LINKS} links`);
  const joined = new Set<string>();
  rawLinks.forEach((raw, i) => {
    const path = ['links', i];
    const l = object(raw, path);
    known(l, ['between', 'delay', 'jitter', 'loss', 'rate', 'mtu'], path);
    const ends = array(l.between, [...path, 'between']);
    if (ends.length !== 2) throw new TopologyError([...path, 'between'], 'two node names');
    const [a, b] = ends.map((e, j) => {
      const n = byName.get(string(e, [...path, 'between', j]));
      if (!n) throw new TopologyError([...path, 'between', j], `no node is named ${String(e)}`);
      return n;
    }) as [SimNode, SimNode];
    if (a === b) throw new TopologyError([...path, 'between'], 'a link joins two different nodes');
    const key = [a.name, b.name].sort().join(' ');
    if (joined.has(key)) throw new TopologyError([...path, 'between'], `${a.name} and ${b.name} are already joined`);
    joined.add(key);
    const delayMs = l.delay === undefined ? 0 : duration(l.delay, [...path, 'delay'], 10_000);
    const jitterMs = l.jitter === undefined ? 0 : duration(l.jitter, [...path, 'jitter'], 10_000);
    if (jitterMs > delayMs) throw new TopologyError([...path, 'jitter'], 'jitter may not exceed the delay (a packet cannot arrive before it left)');
    const link: SimLink = {
      a,
      b,
      delayMs,
      jitterMs,
      loss: l.loss === undefined ? 0 : percent(l.loss, [...path, 'loss']),
      rate: l.rate === undefined ? Infinity : bitRate(l.rate, [...path, 'rate']),
      mtu: l.mtu === undefined ? 65535 : integer(l.mtu, [...path, 'mtu'], 576, 65535),
    };
    links.push(link);
    a.links.push(link);
    b.links.push(link);
  });
  for (const n of nodes) {
    if (n !== gateway && n.links.length === 0)
      throw new TopologyError([n.kind === 'router' ? 'routers' : 'hosts', n.name], `${n.name} has no link: nothing could reach it`);
    if (n.kind === 'host' && n.links.length > 1) throw new TopologyError(['hosts', n.name], 'a host has one link (put a router in front of it to join more)');
  }
  // Paths: breadth-first from every node (fewest links; ties by the order links are listed).
  const nextHop = nodes.map((from) => paths(from, nodes));
  for (const n of nodes) {
    if (n !== gateway && !nextHop[0]![n.index])
      throw new TopologyError([n.kind === 'router' ? 'routers' : 'hosts', n.name], `no path from the gateway reaches ${n.name}`);
  }
  const routes: SimRoute[] = [];
  for (const n of nodes) {
    for (const a of n.addresses) {
      const family = inanyFamily(a);
      routes.push({ family, prefix: inanyBytes(a).slice(), length: family === 4 ? 32 : 128, node: n, unreachable: false });
    }
  }
  for (const [name, raw] of Object.entries(routers)) {
    const r = raw as RouterSpec;
    if (r.unreachable === undefined) continue;
    array(r.unreachable, ['routers', name, 'unreachable']).forEach((c, i) => {
      const path = ['routers', name, 'unreachable', i];
      const [addr, length] = cidr(c, path);
      routes.push({ family: addr.length === 4 ? 4 : 6, prefix: addr, length, node: byName.get(name)!, unreachable: true });
    });
  }
  routes.sort((x, y) => y.length - x.length);
  return { seed, nat, resolveMs, nodes, gateway, links, routes, nextHop };
}

/** The route for the `family` address at addr[off]: the longest prefix covering it. */
export function routeFor(t: Topology, family: 4 | 6, addr: Uint8Array, off: number): SimRoute | undefined {
  for (const r of t.routes) if (r.family === family && prefixCovers(r.prefix, r.length, addr, off)) return r;
  return undefined;
}

function prefixCovers(prefix: Uint8Array, length: number, addr: Uint8Array, off: number): boolean {
  const whole = length >> 3;
  for (let i = 0; i < whole; i++) if (prefix[i] !== addr[off + i]) return false;
  const rest = length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (prefix[whole]! & mask) === (addr[off + whole]! & mask);
}

function paths(from: SimNode, nodes: readonly SimNode[]): (SimLink | undefined)[] {
  const first: (SimLink | undefined)[] = new Array<SimLink | undefined>(nodes.length).fill(undefined);
  const seen = new Set<SimNode>([from]);
  let frontier: [SimNode, SimLink | undefined][] = [[from, undefined]];
  while (frontier.length > 0) {
    const next: [SimNode, SimLink | undefined][] = [];
    for (const [n, via] of frontier) {
      // Hosts are ends, not routers: no path goes through one.
      if (n !== from && n.kind === 'host') continue;
      for (const l of n.links) {
        const other = l.a === n ? l.b : l.a;
        if (seen.has(other)) continue;
        seen.add(other);
        const hop = via ?? l;
        first[other.index] = hop;
        next.push([other, hop]);
      }
    }
    frontier = next;
  }
  return first;
}

function node(
  name: string,
  kind: SimNode['kind'],
  index: number,
  addrs: Inany[],
  svc: SimService[],
  raw: Record<string, unknown>,
  path: (string | number)[] = [],
): SimNode {
  const v4 = addrs.find((a) => inanyIsV4(a));
  const v6 = addrs.find((a) => !inanyIsV4(a));
  return {
    name,
    kind,
    index,
    addresses: addrs,
    source4: v4,
    source6: v6,
    services: svc,
    filtered: ports(raw.filtered, [...path, 'filtered']),
    silent: ports(raw.silent, [...path, 'silent']),
    down: raw.down === undefined ? false : boolean(raw.down, [...path, 'down']),
    ratelimitMs: raw.icmpRatelimit === undefined ? 1000 : duration(raw.icmpRatelimit, [...path, 'icmpRatelimit'], 60_000),
    msgsPerSec: raw.icmpMsgsPerSec === undefined ? 1000 : integer(raw.icmpMsgsPerSec, [...path, 'icmpMsgsPerSec'], 0, 1_000_000),
    msgsBurst: raw.icmpMsgsBurst === undefined ? 50 : integer(raw.icmpMsgsBurst, [...path, 'icmpMsgsBurst'], 1, 1_000_000),
    links: [],
  };
}

function addresses(v: unknown, path: (string | number)[], owners: Map<string, string>, owner: string): Inany[] {
  const list = array(v, path);
  if (list.length === 0) throw new TopologyError(path, 'at least one address');
  return list.map((a, i) => {
    const text = string(a, [...path, i]);
    if (!ipaddr.isValid(text) || text.includes('/') || text.includes('%')) throw new TopologyError([...path, i], `${text} is not an IPv4 or IPv6 address`);
    const parsed = ipaddr.parse(text);
    const range = parsed.range();
    if (['unspecified', 'broadcast', 'multicast', 'linkLocal', 'loopback'].includes(range))
      throw new TopologyError([...path, i], `${text} is ${range}: a node's address is unicast`);
    const bytes = Uint8Array.from(
      parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address().toByteArray() : parsed.toByteArray(),
    );
    const key = bytes.join('.');
    const already = owners.get(key);
    if (already !== undefined) throw new TopologyError([...path, i], `${text} is already ${already}'s`);
    owners.set(key, owner);
    return inanyFrom(bytes);
  });
}

function services(v: unknown, path: (string | number)[], host: string, readFile: ReadBodyFile | undefined): SimService[] {
  if (v === undefined) return [];
  const list = array(v, path);
  if (list.length > MAX_SERVICES) throw new TopologyError(path, `at most ${MAX_SERVICES} services`);
  const seen = new Set<string>();
  return list.map((raw, i) => {
    const p = [...path, i];
    const s = object(raw, p);
    known(s, ['tcp', 'udp', 'serve', 'body', 'file', 'contentType'], p);
    const [proto, port] = portOf(s, p);
    const serve = string(s.serve, [...p, 'serve']);
    if (serve !== 'echo' && serve !== 'discard' && serve !== 'http') throw new TopologyError([...p, 'serve'], 'echo, discard or http');
    if (serve === 'http' && proto !== 'tcp') throw new TopologyError([...p, 'serve'], 'http is served over tcp');
    if (seen.has(`${proto}/${port}`)) throw new TopologyError(p, `${proto} port ${port} is served twice`);
    seen.add(`${proto}/${port}`);
    if (s.body !== undefined && s.file !== undefined) throw new TopologyError([...p, 'file'], 'give body or file, not both');
    let body: Uint8Array;
    if (s.file !== undefined) {
      const name = string(s.file, [...p, 'file']);
      if (!readFile) throw new TopologyError([...p, 'file'], 'files are read only for a topology file (give body)');
      try {
        body = readFile(name, MAX_BODY);
      } catch (err) {
        throw new TopologyError([...p, 'file'], `cannot read ${name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    } else body = UTF8.encode(s.body === undefined ? `hello from ${host}\n` : string(s.body, [...p, 'body']));
    if (body.length > MAX_BODY) throw new TopologyError([...p, s.file !== undefined ? 'file' : 'body'], `at most ${MAX_BODY} bytes`);
    return { proto, port, serve, body, contentType: s.contentType === undefined ? 'text/plain' : string(s.contentType, [...p, 'contentType']) };
  });
}

/** A set of "tcp/80"-style keys. */
function ports(v: unknown, path: (string | number)[]): Set<string> {
  const out = new Set<string>();
  if (v === undefined) return out;
  array(v, path).forEach((raw, i) => {
    const p = [...path, i];
    const s = object(raw, p);
    known(s, ['tcp', 'udp'], p);
    const [proto, port] = portOf(s, p);
    out.add(`${proto}/${port}`);
  });
  return out;
}

function portOf(s: Record<string, unknown>, path: (string | number)[]): ['tcp' | 'udp', number] {
  if ((s.tcp === undefined) === (s.udp === undefined)) throw new TopologyError(path, 'give one of tcp: PORT and udp: PORT');
  return s.tcp !== undefined ? ['tcp', integer(s.tcp, [...path, 'tcp'], 1, 65535)] : ['udp', integer(s.udp, [...path, 'udp'], 1, 65535)];
}

function cidr(v: unknown, path: (string | number)[]): [Uint8Array, number] {
  const text = string(v, path);
  try {
    const [addr, length] = text.includes('/') ? ipaddr.parseCIDR(text) : [ipaddr.parse(text), ipaddr.parse(text).kind() === 'ipv4' ? 32 : 128];
    return [Uint8Array.from(addr.toByteArray()), length];
  } catch {
    throw new TopologyError(path, `${text} is not a prefix (ADDRESS/LENGTH)`);
  }
}

// ---- values ----

function object(v: unknown, path: (string | number)[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TopologyError(path, 'a mapping (key: value)');
  return v as Record<string, unknown>;
}

function array(v: unknown, path: (string | number)[]): unknown[] {
  if (!Array.isArray(v)) throw new TopologyError(path, 'a list');
  return v;
}

function string(v: unknown, path: (string | number)[]): string {
  if (typeof v !== 'string') throw new TopologyError(path, 'a string');
  return v;
}

/** true/false, or (as YAML 1.1 and people write them) on/off and yes/no. */
function boolean(v: unknown, path: (string | number)[]): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && ['on', 'yes'].includes(v.toLowerCase())) return true;
  if (typeof v === 'string' && ['off', 'no'].includes(v.toLowerCase())) return false;
  throw new TopologyError(path, 'true or false (on/off, yes/no)');
}

function integer(v: unknown, path: (string | number)[], min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new TopologyError(path, `a whole number from ${min} to ${max}`);
  return v;
}

function known(o: Record<string, unknown>, keys: readonly string[], path: (string | number)[]): void {
  for (const k of Object.keys(o)) if (!keys.includes(k)) throw new TopologyError([...path, k], `unknown key (known here: ${keys.join(', ')})`);
}

/** ms: a number, or a string with a unit (us, ms, s). */
export function duration(v: unknown, path: (string | number)[], maxMs: number): number {
  let ms: number;
  if (typeof v === 'number') ms = v;
  else {
    const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s)\s*$/.exec(string(v, path));
    if (!m) throw new TopologyError(path, 'a duration: a number of ms, or a number with us, ms or s');
    ms = Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'us' ? 0.001 : 1);
  }
  if (!Number.isFinite(ms) || ms < 0 || ms > maxMs) throw new TopologyError(path, `a duration from 0 to ${maxMs} ms`);
  return ms;
}

function percent(v: unknown, path: (string | number)[]): number {
  const n = typeof v === 'number' ? v : Number(/^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$/.exec(string(v, path))?.[1] ?? NaN);
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new TopologyError(path, 'a percentage from 0 to 100 (5 or "5%")');
  return n / 100;
}

function bitRate(v: unknown, path: (string | number)[]): number {
  let bits: number;
  if (typeof v === 'number') bits = v;
  else {
    const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(bit|kbit|mbit|gbit)\s*$/i.exec(string(v, path));
    if (!m) throw new TopologyError(path, 'a rate: bit/s, or a number with kbit, mbit or gbit');
    bits = Number(m[1]) * { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 }[m[2]!.toLowerCase() as 'bit'];
  }
  if (!Number.isFinite(bits) || bits < 8000 || bits > 1e12) throw new TopologyError(path, 'a rate from 8kbit to 1000gbit');
  return bits;
}
