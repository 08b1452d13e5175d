// `vunet ctl [--control PATH | --socket PATH] COMMAND`: the client of a running vunet's control
// socket (control.ts). One request, one reply; JSON out (the status summary as text unless
// --json). A daemon that is not running, a refused request or a bad command line gets one line
// on stderr and a non-zero exit: 1 for what the daemon or the socket said, 2 for the command line.
import { createConnection } from 'node:net';
import { Command, CommanderError, Option } from 'commander';
import type { ControlRequest } from './control.js';
import { formatSummary } from './status.js';
import type { StatusSummary } from './status.js';

export interface CtlIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** How long a request may take before the client gives up. */
const REPLY_TIMEOUT_MS = 10_000;
/** The longest reply the client reads (a flow table of thousands of entries fits). */
const MAX_REPLY = 64 * 1024 * 1024;

class CtlUsage extends Error {}

const COMMANDS_HELP = `
Commands:
  status                 a short summary: guest, uptime, link, ICMP, forwards, flows, drops
  forwards               the port forwards in effect (JSON)
  add -t|-u SPEC         forward a host port while running; SPEC as for vunet -t/-u
  remove -t|-u SPEC      stop forwarding it (open connections stay)
  leases                 DHCP leases (JSON)
  neighbours             the ARP and NDP neighbour caches (JSON)
  flows                  NAT flows: protocol, guest and host ends, state, bytes, age (JSON)
  counters               every counter (JSON)

The control socket is --control PATH, or beside the vhost-user socket: --socket PATH means PATH.ctl.
Examples:
  vunet ctl --socket /tmp/vunet.sock status
  vunet ctl --socket /tmp/vunet.sock add -t 8080:80
  vunet ctl --control /run/vunet/ctl remove -t 8080`;

interface CtlCommand {
  path: string;
  request: ControlRequest;
  json: boolean;
}

function parseCtl(argv: readonly string[], io: CtlIo): CtlCommand | undefined {
  const program = new Command('vunet ctl')
    .usage('[--control PATH | --socket PATH] COMMAND [-t|-u SPEC] [--json]')
    .description('Asks a running vunet over its control socket.')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: () => {}, outputError: () => {} })
    .allowExcessArguments(true)
    .argument('<command>')
    .argument('[spec]')
    .addOption(new Option('--control <path>', 'the control socket'))
    .addOption(new Option('--socket <path>', "the vunet's vhost-user socket (the control socket is beside it)"))
    .addOption(new Option('-t, --tcp <spec>', 'for add/remove: a TCP forward, as vunet -t takes it'))
    .addOption(new Option('-u, --udp <spec>', 'for add/remove: a UDP forward, as vunet -u takes it'))
    .addOption(new Option('--json', 'status as JSON'))
    .helpOption('-h, --help', 'print this help and exit')
    .addHelpText('after', COMMANDS_HELP);
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version')) return undefined;
    if (err instanceof CommanderError) throw new CtlUsage(`${err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ')} (see vunet ctl --help)`);
    throw err;
  }
  const o = program.opts<{ control?: string; socket?: string; tcp?: string; udp?: string; json?: boolean }>();
  const [cmd = '', extra] = program.args;
  if (program.args.length > 1 && !(cmd === 'add' || cmd === 'remove')) throw new CtlUsage(`unexpected argument '${extra ?? ''}' (see vunet ctl --help)`);
  if (o.control !== undefined && o.socket !== undefined) throw new CtlUsage('--control and --socket both say where to connect: give one');
  if (o.control === undefined && o.socket === undefined)
    throw new CtlUsage('which vunet? --socket PATH (its vhost-user socket) or --control PATH (its control socket)');
  const path = o.control ?? `${o.socket}.ctl`;
  const name = cmd === 'neighbors' ? 'neighbours' : cmd;
  const known = ['status', 'forwards', 'add', 'remove', 'leases', 'neighbours', 'flows', 'counters'];
  if (!known.includes(name)) throw new CtlUsage(`unknown command '${cmd}': one of ${known.join(', ')} (see vunet ctl --help)`);
  if (name === 'add' || name === 'remove') {
    const given = [o.tcp !== undefined, o.udp !== undefined, extra !== undefined].filter(Boolean).length;
    if (given !== 1 || extra !== undefined) throw new CtlUsage(`${name} takes one forward: -t SPEC or -u SPEC, such as ${name} -t 8080:80`);
    const proto = o.tcp !== undefined ? 'tcp' : 'udp';
    return { path, request: { cmd: name, proto, spec: o.tcp ?? o.udp ?? '' }, json: o.json === true };
  }
  if (o.tcp !== undefined || o.udp !== undefined) throw new CtlUsage(`-t and -u go with add and remove, not ${cmd}`);
  return { path, request: { cmd: name }, json: o.json === true };
}

/** Sends one request and reads its reply line. Rejects with a message for a person. */
export function request(path: string, req: ControlRequest): Promise<{ ok: boolean; result?: unknown; error?: string }> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${path} within ${REPLY_TIMEOUT_MS / 1000} s`));
    }, REPLY_TIMEOUT_MS);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REPLY) {
        socket.destroy();
        clearTimeout(timer);
        return reject(new Error(`the reply from ${path} is longer than ${MAX_REPLY} bytes`));
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: string });
      } catch {
        reject(new Error(`${path} answered something that is not JSON: is it a vunet control socket?`));
      }
    });
    socket.on('end', () => {
      clearTimeout(timer);
      reject(new Error(`${path} closed the connection without an answer`));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? 'no vunet is running there (start vunet, or name its socket with --socket or --control)'
          : err.code === 'EACCES'
            ? 'permission denied (run as the user vunet runs as, or one of --socket-group)'
            : err.code === 'ENOTSOCK'
              ? 'not a socket'
              : (err.code ?? err.message);
      reject(new Error(`cannot reach the control socket ${path}: ${why}`));
    });
  });
}

/** Runs `vunet ctl ARGS`; returns the exit code. */
export async function runCtl(argv: readonly string[], io: CtlIo): Promise<number> {
  let cmd: CtlCommand | undefined;
  try {
    cmd = parseCtl(argv, io);
  } catch (err) {
    if (err instanceof CtlUsage) {
      io.err(`vunet ctl: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (!cmd) return 0;
  let reply: { ok: boolean; result?: unknown; error?: string };
  try {
    reply = await request(cmd.path, cmd.request);
  } catch (err) {
    io.err(`vunet ctl: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  if (!reply.ok) {
    io.err(`vunet ctl: ${reply.error ?? 'the request failed'}\n`);
    return 1;
  }
  if (cmd.request.cmd === 'status' && !cmd.json) io.out(formatSummary(reply.result as StatusSummary));
  else io.out(`${JSON.stringify(reply.result, null, 2)}\n`);
  return 0;
}
