#!/usr/bin/env node
// `vunet --socket PATH [options]`: serves a QEMU guest's virtio-net over vhost-user. A bad flag or
// an unusable environment gets one line saying what to do and a non-zero exit. `vunet ctl ...`
// asks a running vunet over its control socket (src/main/ctl.ts).
import { SocketInUseError } from 'vhost-user-ts';
import { createStartLogger } from './main/logger.js';
import { HelpShown, UsageError, parseArgs, qemuBanner } from './main/options.js';
import { PcapError } from './main/pcap.js';
import { PidFileError, checkPidFile, removePidFile, writePidFile } from './main/pid-file.js';
import { PrivilegeError, applyPrivileges, planPrivileges, resolveGroup, setSocketAccess } from './main/privileges.js';
import type { PrivilegePlan } from './main/privileges.js';
import type { VunetOptions } from './main/options.js';
import { ForwardError, Vunet } from './main/vunet.js';
import { ControlInUseError } from './main/control.js';
import { runCtl } from './main/ctl.js';
import { formatIpv4, formatIpv6 } from './wire/index.js';

function fail(message: string, code: number): number {
  process.stderr.write(`vunet: ${message}\n`);
  return code;
}

/** SD_LISTEN_FDS_START: the first fd systemd passes. */
const LISTEN_FDS_START = 3;

/**
 * The socket systemd's socket activation passed, if it passed one to this process: LISTEN_PID is
 * ours and LISTEN_FDS at least 1 (sd_listen_fds(3)). The variables are then removed, so that no
 * child takes them for its own.
 */
function activatedFd(env: NodeJS.ProcessEnv): number | undefined {
  if (env.LISTEN_PID !== String(process.pid) || !/^[1-9][0-9]*$/.test(env.LISTEN_FDS ?? '')) return undefined;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  return LISTEN_FDS_START;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'ctl') {
    return runCtl(argv.slice(1), { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) });
  }
  let opts: VunetOptions;
  try {
    opts = parseArgs(argv, {}, activatedFd(process.env));
  } catch (err) {
    if (err instanceof HelpShown) return 0;
    if (err instanceof UsageError) return fail(err.message, 2);
    throw err;
  }
  // Nothing but the error is printed when the start fails: the lines logged meanwhile wait.
  const { logger, started } = createStartLogger(opts.logLevel);
  let privileges: PrivilegePlan;
  let socketGid: number | undefined;
  try {
    privileges = planPrivileges(opts);
    if (opts.socketGroup !== undefined) socketGid = resolveGroup(opts.socketGroup);
  } catch (err) {
    if (err instanceof PrivilegeError) return fail(err.message, 2);
    throw err;
  }
  try {
    if (opts.pidFile !== undefined) checkPidFile(opts.pidFile);
  } catch (err) {
    if (err instanceof PidFileError) return fail(err.message, 1);
    throw err;
  }
  let vunet: Vunet;
  try {
    vunet = await Vunet.start({
      socketPath: opts.socketPath,
      ...(opts.moreSockets ? { moreSockets: opts.moreSockets } : {}),
      ...(opts.listenFd !== undefined ? { listenFd: opts.listenFd } : {}),
      config: opts.config,
      logger,
      mapGateway: opts.mapGateway,
      udpTimeoutSec: opts.udpTimeoutSec,
      tcpTimeWaitMs: opts.tcpTimeWaitMs,
      dnsUpstream: opts.dnsUpstream,
      forwards: opts.forwards,
      maxMemory: opts.maxMemory,
      denyHost: opts.denyHost,
      deny: opts.deny,
      ...(opts.pcapFile !== undefined ? { pcapFile: opts.pcapFile } : {}),
      ...(opts.topology !== undefined ? { topology: opts.topology } : {}),
      controlPath: opts.controlPath,
      controlMode: opts.socketMode,
    });
  } catch (err) {
    if (err instanceof SocketInUseError || err instanceof PcapError || err instanceof ForwardError || err instanceof ControlInUseError)
      return fail(err.message, 1);
    const e = err as NodeJS.ErrnoException & { address?: string };
    if (opts.controlPath !== undefined && e.address === opts.controlPath) {
      return fail(
        `cannot listen on the control socket ${opts.controlPath}: ${e.code ?? e.message} (check the directory exists and is writable, or --no-control)`,
        1,
      );
    }
    if (opts.socketPath === undefined && e.code !== undefined) {
      return fail(`cannot listen on fd ${opts.listenFd}: ${e.message} (give a listening unix socket)`, 1);
    }
    if (e.code === 'EACCES' || e.code === 'ENOENT' || e.code === 'EADDRINUSE' || e.code === 'ENAMETOOLONG') {
      return fail(`cannot listen on ${opts.socketPath}: ${e.code} (check the directory exists and is writable)`, 1);
    }
    return fail(e.message, 1);
  }
  if (opts.socketPath !== undefined && (opts.socketMode !== undefined || socketGid !== undefined)) {
    try {
      setSocketAccess(opts.socketPath, opts.socketMode, socketGid);
      for (const more of opts.moreSockets ?? []) setSocketAccess(more, opts.socketMode, socketGid);
      // The control socket is no more open than the vhost-user socket: the same mode and group.
      if (opts.controlPath !== undefined && socketGid !== undefined) setSocketAccess(opts.controlPath, undefined, socketGid);
    } catch (err) {
      await vunet.close();
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      return fail(`cannot set --socket-mode/--socket-group on ${opts.socketPath}: ${code} (the group must be one of yours unless vunet runs as root)`, 1);
    }
  }
  // Once the socket listens (and has its mode and group): whoever waits for the file can connect.
  if (opts.pidFile !== undefined) {
    try {
      writePidFile(opts.pidFile);
    } catch (err) {
      await vunet.close();
      return fail(
        `cannot write --pid-file ${opts.pidFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)} (check the directory exists and is writable)`,
        1,
      );
    }
  }
  try {
    applyPrivileges(privileges, {
      ...(opts.socketPath !== undefined ? { socketPath: opts.socketPath } : {}),
      ...(opts.controlPath !== undefined ? { controlPath: opts.controlPath } : {}),
      ...(opts.moreSockets ? { moreSockets: opts.moreSockets } : {}),
      logger,
      ...(socketGid !== undefined ? { socketGid } : {}),
      ...(opts.pcapFile !== undefined ? { pcapFile: opts.pcapFile } : {}),
      ...(opts.pidFile !== undefined ? { pidFile: opts.pidFile } : {}),
    });
  } catch (err) {
    await vunet.close();
    if (opts.pidFile !== undefined) removePidFile(opts.pidFile);
    const hint = '--runas chooses the user; --no-sandbox skips no_new_privs, Landlock and seccomp';
    return fail(`cannot drop privileges: ${err instanceof Error ? err.message : String(err)} (${hint})`, 1);
  }
  started();
  if (opts.controlWarning !== undefined) logger.warn(opts.controlWarning);
  const c = opts.config;
  logger.info(
    {
      socket: vunet.listenedOn,
      gateway: formatIpv4(c.ipv4.gateway),
      dns: formatIpv4(c.ipv4.dns),
      guest: formatIpv4(c.ipv4.dhcpFirst),
      ...(c.ipv6 ? { gateway6: formatIpv6(c.ipv6.gateway), dns6: formatIpv6(c.ipv6.dns) } : {}),
      mtu: c.mtu,
      maxMemoryMiB: opts.maxMemory / 1024 ** 2,
      ...(opts.forwards.length > 0 ? { forwards: opts.forwards.length } : {}),
      ...(opts.controlPath !== undefined ? { control: opts.controlPath } : {}),
      ...(opts.denyHost || opts.deny.length > 0 ? { denyHost: opts.denyHost, deny: opts.deny.length } : {}),
      ...(opts.topology ? { topology: { nodes: opts.topology.nodes.length - 1, nat: opts.topology.nat } } : {}),
    },
    'vunet listening',
  );
  // The handlers first: whoever reads the line below may signal at once (a test, a script, a
  // quick Ctrl-C), and a SIGINT before them would kill the process with the socket left behind.
  const stop = async (signal: string): Promise<void> => {
    logger.info({ signal }, 'stopping');
    await vunet.close();
    if (opts.pidFile !== undefined) removePidFile(opts.pidFile);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  // Every counter (what scripts read) and the summary `vunet ctl status` prints, in one line.
  process.on('SIGUSR1', () => logger.info({ ...vunet.status(), summary: vunet.summary() }, 'status'));
  process.stderr.write(`\n${qemuBanner(vunet.listenedOn)}\n`);
  return -1; // keep running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`vunet: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
