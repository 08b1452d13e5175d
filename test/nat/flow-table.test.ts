// The NAT's one flow table: numeric hashing over both families read in place, kinds and sides kept
// apart, the lifecycle (new → live → gone), the bound; and the idle lists' order and expiry.
import t from 'tap';
import { Flow, FlowKind, FlowSide, FlowSideName, FlowTable, IdleFlows } from '../../src/nat/flow-table.js';
import { inanyOf, parseIpv6 } from '../../src/wire/index.js';

const G4 = Uint8Array.of(10, 0, 2, 15);
const R4 = Uint8Array.of(192, 0, 2, 1);
const G6 = parseIpv6('fec0::15')!;
const R6 = parseIpv6('2001:db8::1')!;

function flow4(kind: FlowKind, gport: number, rport: number, remote = R4): Flow {
  return new Flow(kind, 4, inanyOf(4, G4), gport, inanyOf(4, remote), rport, 0);
}

/** An IPv4 header's addresses as a packet holds them. */
function header4(src: Uint8Array, dst: Uint8Array): Uint8Array {
  const h = new Uint8Array(20);
  h.set(src, 12);
  h.set(dst, 16);
  return h;
}

t.test('a live flow is found from the packet in place, by kind; gone, it is never found again', async (t) => {
  const table = new FlowTable(100, 12345);
  const f = flow4(FlowKind.UDP, 5000, 53);
  t.notOk(f.live, 'new: not live');
  t.equal(table.find(FlowKind.UDP, 4, G4, 0, 5000, R4, 0, 53), undefined, 'new: not findable');
  t.ok(table.insert(f));
  t.ok(f.live);
  const h = header4(G4, R4);
  t.equal(table.find(FlowKind.UDP, 4, h, 12, 5000, h, 16, 53), f, 'found from the header in place');
  t.equal(table.find(FlowKind.UDP, 4, f.guest, 12, 5000, f.remote, 12, 53), f, 'found from its own Inany bytes');
  t.equal(table.find(FlowKind.TCP, 4, h, 12, 5000, h, 16, 53), undefined, 'another kind is another flow');
  t.equal(table.find(FlowKind.UDP, 4, h, 12, 5001, h, 16, 53), undefined);
  t.equal(table.find(FlowKind.UDP, 4, h, 16, 5000, h, 12, 53), undefined, 'the sides are not interchangeable');
  t.equal(table.count(FlowKind.UDP), 1);
  t.equal(table.size, 1);
  t.notOk(table.insert(flow4(FlowKind.UDP, 5000, 53)), 'the same tuple twice is refused');
  table.remove(f);
  t.notOk(f.live, 'gone');
  t.equal(table.find(FlowKind.UDP, 4, h, 12, 5000, h, 16, 53), undefined);
  t.equal(table.size, 0);
  table.remove(f);
  t.equal(table.size, 0, 'removing a gone flow does nothing');
});

t.test('IPv6 tuples, and IPv4 and IPv6 never confused', async (t) => {
  const table = new FlowTable(100, 1);
  const f6 = new Flow(FlowKind.TCP, 6, inanyOf(6, G6), 40000, inanyOf(6, R6), 80, 0);
  t.ok(table.insert(f6));
  const h = new Uint8Array(40);
  h.set(G6, 8);
  h.set(R6, 24);
  t.equal(table.find(FlowKind.TCP, 6, h, 8, 40000, h, 24, 80), f6);
  // An IPv4 flow whose addresses equal the IPv6 ones' last four bytes.
  const f4 = new Flow(FlowKind.TCP, 4, inanyOf(4, G6, 12), 40000, inanyOf(4, R6, 12), 80, 0);
  t.ok(table.insert(f4), 'a different flow');
  t.equal(table.find(FlowKind.TCP, 4, G6, 12, 40000, R6, 12, 80), f4);
  t.equal(table.find(FlowKind.TCP, 6, h, 8, 40000, h, 24, 80), f6);
});

t.test('a host side: found by its own tuple, gone with the flow', async (t) => {
  const table = new FlowTable(100, 7);
  const f = flow4(FlowKind.UDP_FORWARD, 7, 40001);
  const client = inanyOf(6, R6);
  const unspecified = inanyOf(6, new Uint8Array(16));
  f.hostSide = new FlowSide(f, FlowSideName.HOST, client, 40001, unspecified, 3);
  t.ok(table.insert(f));
  t.equal(table.findHost(FlowKind.UDP_FORWARD, 6, R6, 0, 40001, new Uint8Array(16), 0, 3), f);
  t.equal(table.findHost(FlowKind.UDP_FORWARD, 6, R6, 0, 40001, new Uint8Array(16), 0, 4), undefined, 'another listener');
  t.equal(table.find(FlowKind.UDP_FORWARD, 6, R6, 0, 40001, new Uint8Array(16), 0, 3), undefined, 'a host tuple is not a guest tuple');
  t.equal([...table.flows()].length, 1, 'listed once, not once per side');
  table.remove(f);
  t.equal(table.findHost(FlowKind.UDP_FORWARD, 6, R6, 0, 40001, new Uint8Array(16), 0, 3), undefined);
});

t.test('bounded in total; every flow stays findable through collisions and removals', async (t) => {
  const table = new FlowTable(3000, 99);
  const flows: Flow[] = [];
  let inserted = 0;
  for (let i = 0; i < 3000; i++) {
    const f = flow4(i % 2 === 0 ? FlowKind.TCP : FlowKind.UDP, 1024 + i, 80, Uint8Array.of(192, 0, 2, i & 0xff));
    if (table.insert(f)) inserted++;
    flows.push(f);
  }
  t.equal(inserted, 3000);
  t.notOk(table.hasRoom());
  t.notOk(table.insert(flow4(FlowKind.ECHO, 1, 0)), 'full: refused');
  t.equal(table.count(FlowKind.TCP), 1500);
  for (let i = 0; i < 3000; i += 3) table.remove(flows[i]!);
  let found = 0;
  let wrong = 0;
  for (let i = 0; i < 3000; i++) {
    const f = flows[i]!;
    const got = table.find(f.kind, 4, G4, 0, 1024 + i, Uint8Array.of(192, 0, 2, i & 0xff), 0, 80);
    if (i % 3 === 0) wrong += got === undefined ? 0 : 1;
    else if (got === f) found++;
    else wrong++;
  }
  t.equal(wrong, 0, 'no removed flow found, no live one missed');
  t.equal(found, 2000);
  t.equal(table.size, 2000);
  t.ok(table.hasRoom());
  t.equal([...table.flows()].length, 2000);
});

t.test('idle lists: least recently used first; expiry takes only the due ones', async (t) => {
  const idle = new IdleFlows<Flow>(1000);
  const a = flow4(FlowKind.UDP, 1, 1);
  const b = flow4(FlowKind.UDP, 2, 1);
  const c = flow4(FlowKind.UDP, 3, 1);
  for (const f of [a, b, c]) idle.add(f);
  t.equal(idle.oldest, a);
  idle.touch(a, 500);
  t.equal(idle.oldest, b, 'a touched: b is the oldest');
  t.same(
    idle.all().map((f) => f.guestPort),
    [2, 3, 1],
  );
  t.equal(idle.pollAt(), 1000);
  const ended: number[] = [];
  idle.expire(1200, (f) => {
    ended.push(f.guestPort);
    idle.delete(f);
  });
  t.same(ended, [2, 3], 'b and c were idle for a second; a only for 700 ms');
  t.equal(idle.size, 1);
  t.equal(idle.pollAt(), 1500);
  idle.delete(a);
  idle.delete(a);
  t.equal(idle.size, 0, 'deleting twice does nothing');
  t.equal(idle.pollAt(), Infinity);
});
