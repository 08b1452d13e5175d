// QEMU runner for the vunet test guest (vm-images/): builds/locates the guest image, boots it
// under TCG (or KVM when KVM really boots a guest), with no NIC, a vhost-user virtio-net device
// or QEMU's user-mode (slirp) netdev, and gives tests the serial console as text.
//
// Library:  import { ensureGuestImage, startGuest } from '../scripts/qemu.js';
// CLI:      npx tsx scripts/qemu.ts --help      (boots a guest with the console on the terminal)
//
// See vm-images/README.md for the guest's contents and conventions.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, renameSync, accessSync, constants } from 'node:fs';
import { readFile, writeFile, copyFile, appendFile, stat, truncate, mkdir, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BUILD_SCRIPT = path.join(REPO_ROOT, 'vm-images', 'build.sh');
/** QEMU's own default MAC; the guest's eth0 gets it unless `mac` says otherwise. */
export const DEFAULT_GUEST_MAC = '52:54:00:12:34:56';
/** Printed by the guest's /init once modules are loaded and lo is up. */
export const BOOTED_MARKER = 'VUNET-GUEST: booted';
/** Matches the guest's `VUNET-GUEST: exit <status>` line (after /test.sh). */
export const EXIT_MARKER_RE = /^VUNET-GUEST: exit (\d+)$/m;

export type Accel = 'kvm' | 'tcg';

/** Where build.sh writes the image (and where the KVM verdict is cached). */
export function imageDir(): string {
  return process.env.VUNET_IMAGE_DIR ?? path.join(REPO_ROOT, 'vm-images', 'out');
}

function qemuBinary(): string {
  return process.env.VUNET_QEMU ?? 'qemu-system-x86_64';
}

// ------------------------------------------------------------------------------------------------
// Temporary files and child processes: cleaned up when this process exits.
// ------------------------------------------------------------------------------------------------

let tmpDir: string | undefined;
let tmpCounter = 0;
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    if (tmpDir !== undefined) rmSync(tmpDir, { recursive: true, force: true });
  });
}

function tempPath(name: string): string {
  installExitHook();
  tmpDir ??= mkdtempSync(path.join(os.tmpdir(), 'vunet-qemu-'));
  tmpCounter += 1;
  return path.join(tmpDir, `${tmpCounter}-${name}`);
}

// ------------------------------------------------------------------------------------------------
// Guest image
// ------------------------------------------------------------------------------------------------

export interface GuestImage {
  /** The directory holding the image (VUNET_IMAGE_DIR or vm-images/out). */
  dir: string;
  kernel: string;
  /** The base initramfs (gzip'd newc cpio). */
  initrd: string;
  /** The same archive uncompressed: what startGuest boots (gunzip under TCG costs ~0.5 s). */
  initrdUncompressed: string;
}

const imagePromises = new Map<string, Promise<GuestImage>>();

/**
 * Makes sure the guest kernel and initramfs exist and are current: runs vm-images/build.sh, which
 * returns in ~0.4 s when its stamp matches the inputs and builds (~6 s) otherwise. Once per process
 * (per image dir) unless `force`. Throws a one-line actionable error (e.g. the apt-get command to
 * run as root) when it cannot build.
 */
export function ensureGuestImage(opts: { force?: boolean; log?: (line: string) => void } = {}): Promise<GuestImage> {
  const dir = imageDir();
  const cached = imagePromises.get(dir);
  if (cached !== undefined && opts.force !== true) return cached;
  const p = runBuild(dir, opts.force === true, opts.log);
  imagePromises.set(dir, p);
  p.catch(() => imagePromises.delete(dir));
  return p;
}

function runBuild(dir: string, force: boolean, log?: (line: string) => void): Promise<GuestImage> {
  return new Promise<GuestImage>((resolve, reject) => {
    const args = [BUILD_SCRIPT, ...(force ? ['--force'] : [])];
    const child = spawn('bash', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, VUNET_IMAGE_DIR: dir },
    });
    let text = '';
    const onData = (chunk: Buffer): void => {
      const s = chunk.toString('utf8');
      text += s;
      if (log !== undefined) for (const line of s.split('\n')) if (line !== '') log(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => reject(new Error(`cannot run ${BUILD_SCRIPT}: ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) {
        const image: GuestImage = {
          dir,
          kernel: path.join(dir, 'vmlinuz'),
          initrd: path.join(dir, 'initramfs.cpio.gz'),
          initrdUncompressed: path.join(dir, 'initramfs.cpio'),
        };
        const absent = [image.kernel, image.initrd, image.initrdUncompressed].filter((f) => !existsSync(f));
        if (absent.length > 0) {
          reject(new Error(`${BUILD_SCRIPT} succeeded but ${absent.join(', ')} is missing`));
        } else {
          resolve(image);
        }
        return;
      }
      const lines = text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '');
      const why = [...lines].reverse().find((l) => l.startsWith('vunet-image:')) ?? lines.at(-1) ?? '';
      reject(new Error(`guest image build failed (${signal ?? `exit ${code}`}): ${why.replace(/^vunet-image: (error: )?/, '')}`));
    });
  });
}

// ------------------------------------------------------------------------------------------------
// newc cpio (the format the kernel unpacks; see Documentation/driver-api/early-userspace/buffer-format.rst)
// ------------------------------------------------------------------------------------------------

/** A file for the script archive: contents, or contents with a mode (default 0644, /test.sh 0755). */
export type CpioFile = string | Buffer | { data: string | Buffer; mode?: number };

/** Directories of the base image with their modes: not re-emitted (the kernel would chmod them). */
const BASE_DIRS = new Set([
  'bin',
  'sbin',
  'usr',
  'usr/bin',
  'usr/sbin',
  'usr/share',
  'lib',
  'lib/x86_64-linux-gnu',
  'lib64',
  'lib/modules',
  'etc',
  'etc/vunet',
  'etc/udhcpc',
  'mnt',
  'var',
  'var/run',
  'root',
]);
/** Mount points of /init: files put there would be hidden by the mounts. */
const HIDDEN_DIRS = ['tmp', 'run', 'dev', 'proc', 'sys'];

export interface CpioEntry {
  name: string;
  mode: number;
  data: Buffer;
}

function cpioHeader(ino: number, e: CpioEntry, nameSize: number): string {
  const fields = [ino, e.mode, 0, 0, (e.mode & 0o170000) === 0o040000 ? 2 : 1, 0, e.data.length, 0, 0, 0, 0, nameSize, 0];
  return '070701' + fields.map((v) => (v >>> 0).toString(16).padStart(8, '0')).join('');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** Serializes entries (parents before children) as an uncompressed newc archive with its trailer. */
export function encodeCpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    offset += b.length;
  };
  const all = [...entries, { name: 'TRAILER!!!', mode: 0, data: Buffer.alloc(0) }];
  all.forEach((e, i) => {
    const name = Buffer.from(e.name + '\0', 'utf8');
    push(Buffer.from(cpioHeader(e.name === 'TRAILER!!!' ? 0 : 1000 + i, e, name.length), 'ascii'));
    push(name);
    push(Buffer.alloc(pad4(offset)));
    push(e.data);
    push(Buffer.alloc(pad4(offset)));
  });
  return Buffer.concat(parts);
}

function normalizeGuestPath(p: string): string {
  const n = path.posix.normalize('/' + p).slice(1);
  if (n === '' || n.startsWith('..')) throw new Error(`bad guest path: ${p}`);
  const top = n.split('/')[0] ?? '';
  if (HIDDEN_DIRS.includes(top)) {
    throw new Error(`guest path /${n}: /${top} is a mount point in the guest, the file would be hidden`);
  }
  return n;
}

/** The uncompressed newc archive with /test.sh (0755) and extra files, as bytes. */
export function scriptCpio(script: string, extraFiles: Record<string, CpioFile> = {}): Buffer {
  const files = new Map<string, CpioEntry>();
  files.set('test.sh', { name: 'test.sh', mode: 0o100755, data: Buffer.from(script, 'utf8') });
  for (const [p, f] of Object.entries(extraFiles)) {
    const name = normalizeGuestPath(p);
    const data = typeof f === 'string' || Buffer.isBuffer(f) ? f : f.data;
    const mode = typeof f === 'string' || Buffer.isBuffer(f) ? 0o644 : (f.mode ?? 0o644);
    files.set(name, { name, mode: 0o100000 | (mode & 0o7777), data: Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8') });
  }
  const dirs = new Set<string>();
  for (const name of files.keys()) {
    const segs = name.split('/');
    for (let i = 1; i < segs.length; i++) {
      const d = segs.slice(0, i).join('/');
      if (!BASE_DIRS.has(d) && !d.startsWith('lib/modules/')) dirs.add(d);
    }
  }
  const entries: CpioEntry[] = [...dirs].sort().map((d) => ({ name: d, mode: 0o040755, data: Buffer.alloc(0) }));
  entries.push(...[...files.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
  return encodeCpio(entries);
}

/**
 * Writes a newc cpio archive holding /test.sh (mode 0755) and `extraFiles` (guest path → contents;
 * not under /tmp, /run, /dev, /proc or /sys, which /init mounts over) and returns its path (a
 * temporary file removed when this process exits).
 */
export async function makeScriptCpio(script: string, extraFiles?: Record<string, CpioFile>): Promise<string> {
  const file = tempPath('script.cpio');
  await writeFile(file, scriptCpio(script, extraFiles));
  return file;
}

/**
 * QEMU 7.2's x86 -initrd takes exactly one file ("a,b" is read as one file name), so the base
 * initramfs and the script archive are concatenated; the kernel unpacks archives one after the
 * other (compressed or not). An uncompressed archive must start 4-byte aligned, hence the zero
 * padding after a gzip'd base (the kernel skips zeros between archives).
 */
async function combineInitrd(base: string, scriptArchive: string): Promise<string> {
  const file = tempPath('initrd.img');
  await copyFile(base, file);
  const size = (await stat(file)).size;
  if (size % 4 !== 0) await truncate(file, size + pad4(size));
  await appendFile(file, await readFile(scriptArchive));
  return file;
}

// ------------------------------------------------------------------------------------------------
// Accelerator: TCG unless KVM really boots a guest
// ------------------------------------------------------------------------------------------------

let accelPromise: Promise<Accel> | undefined;

/**
 * `VUNET_ACCEL=kvm|tcg` wins. Otherwise 'tcg' without a usable /dev/kvm; with one, boots the guest
 * once under KVM with a 5 s limit (a paravirtual KVM that hangs after the decompressor ends as
 * 'tcg') and caches the verdict in `<image dir>/accel.json` keyed by the host kernel release.
 */
export function detectAccel(opts: { force?: boolean; timeoutMs?: number } = {}): Promise<Accel> {
  const env = process.env.VUNET_ACCEL;
  if (env === 'kvm' || env === 'tcg') return Promise.resolve(env);
  if (env !== undefined && env !== '' && env !== 'auto') {
    return Promise.reject(new Error(`VUNET_ACCEL must be kvm, tcg or auto, not ${JSON.stringify(env)}`));
  }
  if (accelPromise === undefined || opts.force === true) accelPromise = probeAccel(opts.force === true, opts.timeoutMs ?? 5000);
  return accelPromise;
}

interface AccelVerdict {
  accel: Accel;
  hostKernel: string;
  reason: string;
  checkedAt: string;
}

async function probeAccel(force: boolean, timeoutMs: number): Promise<Accel> {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return 'tcg';
  }
  const image = await ensureGuestImage();
  const cacheFile = path.join(image.dir, 'accel.json');
  if (!force) {
    try {
      const v = JSON.parse(readFileSync(cacheFile, 'utf8')) as Partial<AccelVerdict>;
      if (v.hostKernel === os.release() && (v.accel === 'kvm' || v.accel === 'tcg')) return v.accel;
    } catch {
      // no verdict yet
    }
  }
  let accel: Accel = 'tcg';
  let reason: string;
  const started = Date.now();
  try {
    const g = await startGuest({ accel: 'kvm', image, script: 'echo VUNET-KVM-OK\n', memoryMiB: 128, timeoutMs });
    try {
      await g.waitFor(/VUNET-KVM-OK/, timeoutMs);
      accel = 'kvm';
      reason = `a KVM guest booted in ${Date.now() - started} ms`;
    } catch (err) {
      const qemuSays = g.stderr.trim().split('\n')[0] ?? '';
      reason = `no KVM boot: ${(err as Error).message.split('\n')[0] ?? ''}${qemuSays !== '' ? ` (qemu: ${qemuSays})` : ''}`;
    } finally {
      g.kill('SIGKILL');
      await g.exited;
    }
  } catch (err) {
    reason = `KVM start failed: ${(err as Error).message.split('\n')[0] ?? ''}`;
  }
  const verdict: AccelVerdict = { accel, hostKernel: os.release(), reason, checkedAt: new Date().toISOString() };
  const tmp = `${cacheFile}.${process.pid}`;
  writeFileSync(tmp, JSON.stringify(verdict, null, 2) + '\n');
  renameSync(tmp, cacheFile);
  return accel;
}

// ------------------------------------------------------------------------------------------------
// Booting a guest
// ------------------------------------------------------------------------------------------------

export interface StartGuestOptions {
  /** vhost-user socket (vunet listens there, QEMU connects). Without it and without
   * `qemuNetdev: 'user'`, the guest has no NIC. */
  socketPath?: string;
  /** Network backend: 'vhost-user' (default when socketPath is set) or QEMU's user-mode slirp. */
  qemuNetdev?: 'vhost-user' | 'user';
  /** Contents of /test.sh: run by /init, then `VUNET-GUEST: exit <status>` and power off. Without
   * a script the guest starts a shell on the console. */
  script?: string;
  /** More files for the script archive (guest path → contents); see makeScriptCpio. */
  extraFiles?: Record<string, CpioFile>;
  /** Guest RAM in MiB (default 256); also the size of the shared memfd backend. */
  memoryMiB?: number;
  /** Guest RAM: a memfd backend shared with the vhost-user backend ('shared', the default, which
   * vhost-user needs), the same with share=off ('private'), or QEMU's default anonymous RAM with no
   * -object memory-backend at all ('none'). The last two are for tests of what a user gets wrong. */
  memoryBackend?: 'shared' | 'private' | 'none';
  /** vCPUs (default: mq when mq > 1, else 1). */
  smp?: number;
  /** Guest MAC (default 52:54:00:12:34:56). */
  mac?: string;
  /** Queue pairs (vhost-user `queues=N`, device `mq=on`); default 1. */
  mq?: number;
  /** MSI-X vectors of virtio-net-pci (default under TCG 0: QEMU 7.2 there segfaults with
   * vhost-user and MSI-X; used for the user netdev too, so both backends see the same device.
   * Under KVM QEMU's own default, MSI-X). */
  vectors?: number;
  /** `reconnect=1` on the vhost-user chardev: QEMU reconnects when the backend restarts. */
  reconnect?: boolean;
  /** User netdev: `hostfwd` rules, e.g. 'tcp:127.0.0.1:5201-:5201'. */
  hostfwd?: string[];
  /** Extra `key=value` options for -netdev (either backend). */
  netdevOptions?: string[];
  /** Extra `key=value` options for -device virtio-net-pci. */
  deviceOptions?: string[];
  /** Extra QEMU arguments, appended last. */
  extraArgs?: string[];
  /** Extra kernel command line (the whole line must stay under 2048 bytes). */
  append?: string;
  /** Keep kernel messages (drops `quiet`). */
  verbose?: boolean;
  /** Host-side limit: QEMU gets SIGTERM (then SIGKILL) after this; `exited` says timedOut. */
  timeoutMs?: number;
  /** Guest-side limit: /init powers off after this many seconds even if /test.sh hangs. */
  guestTimeoutSec?: number;
  /** Default: detectAccel(). */
  accel?: Accel;
  /** Console on this process's terminal (stdio inherited, `-serial mon:stdio`, Ctrl-A x quits);
   * `output`/`waitFor` are then unavailable. */
  interactive?: boolean;
  /** Mirror console output as it arrives (true: process.stderr). Default: env VUNET_GUEST_ECHO=1. */
  echo?: boolean | NodeJS.WritableStream;
  /** Use this image instead of ensureGuestImage(). */
  image?: GuestImage;
  /** Run QEMU as this user (through setpriv; needs root): the kernel and initrd are copied to a
   * directory anyone may read first, since the checkout and this process's temporary directory
   * may be closed to it. */
  user?: { uid: number; gid: number; groups: number[] };
}

export interface GuestExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Killed because timeoutMs passed. */
  timedOut: boolean;
  /** From the `VUNET-GUEST: exit <status>` line, when /test.sh ran to its end. */
  guestStatus: number | undefined;
  /** Why the runner killed QEMU itself (other than timeoutMs), e.g. a vhost-user start loop. */
  failure?: string;
}

export interface GuestHandle {
  readonly pid: number | undefined;
  /** The QEMU command line (argv[0] first). */
  readonly command: readonly string[];
  readonly accel: Accel;
  /** Console text so far (carriage returns removed). */
  readonly output: string;
  /** QEMU's stderr so far. */
  readonly stderr: string;
  /** Resolves with the first match of `re` in the console output (past or future); rejects after
   * `timeoutMs` (default 60 s) or when QEMU exits first, with the console tail in the message. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Types into the console (the guest's ttyS0). */
  write(text: string): void;
  readonly exited: Promise<GuestExit>;
  /** Stops QEMU (default SIGTERM; QEMU quits at once). */
  kill(signal?: NodeJS.Signals): void;
}

/** Escapes a value for QEMU's comma-separated option syntax. */
function qemuOpt(value: string): string {
  return value.replaceAll(',', ',,');
}

export interface QemuCommandInput {
  image: GuestImage;
  initrd: string;
  accel: Accel;
  opts: StartGuestOptions;
}

/** Builds the QEMU argv (without the binary) for startGuest; exported for inspection and tests. */
export function qemuArgs({ image, initrd, accel, opts }: QemuCommandInput): string[] {
  const mem = opts.memoryMiB ?? 256;
  const backend = opts.memoryBackend ?? 'shared';
  const mq = opts.mq ?? 1;
  const smp = opts.smp ?? (mq > 1 ? mq : 1);
  const netdev = opts.qemuNetdev ?? (opts.socketPath !== undefined ? 'vhost-user' : undefined);
  const cmdline = [
    'console=ttyS0',
    ...(opts.verbose === true ? [] : ['quiet']),
    'panic=-1', // reboot at once on panic; -no-reboot turns that into QEMU exiting
    'oops=panic',
    ...(opts.guestTimeoutSec !== undefined ? [`vunet.timeout=${Math.ceil(opts.guestTimeoutSec)}`] : []),
    ...(opts.append !== undefined && opts.append !== '' ? [opts.append] : []),
  ].join(' ');
  if (Buffer.byteLength(cmdline) >= 2048) throw new Error('kernel command line longer than 2047 bytes; use extraFiles');

  const args = [
    '-machine',
    'q35',
    '-accel',
    accel,
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-smp',
    String(smp),
    '-m',
    `${mem}M`,
    ...(backend === 'none'
      ? []
      : ['-object', `memory-backend-memfd,id=mem,size=${mem}M,share=${backend === 'shared' ? 'on' : 'off'}`, '-numa', 'node,memdev=mem']),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-serial',
    opts.interactive === true ? 'mon:stdio' : 'stdio',
    '-kernel',
    image.kernel,
    '-initrd',
    initrd,
    '-append',
    cmdline,
  ];

  const device = (netdevId: string): string =>
    [
      'virtio-net-pci',
      `netdev=${netdevId}`,
      `mac=${opts.mac ?? DEFAULT_GUEST_MAC}`,
      ...(opts.vectors !== undefined ? [`vectors=${opts.vectors}`] : accel === 'tcg' ? ['vectors=0'] : []),
      'romfile=', // no iPXE option ROM: faster, and no ipxe-qemu needed
      ...(mq > 1 ? ['mq=on'] : []),
      ...(opts.deviceOptions ?? []),
    ].join(',');

  if (netdev === 'vhost-user') {
    if (opts.socketPath === undefined) throw new Error("qemuNetdev 'vhost-user' needs socketPath");
    args.push(
      '-chardev',
      `socket,id=c0,path=${qemuOpt(opts.socketPath)}${opts.reconnect === true ? ',reconnect=1' : ''}`,
      '-netdev',
      ['vhost-user', 'id=n0', 'chardev=c0', ...(mq > 1 ? [`queues=${mq}`] : []), ...(opts.netdevOptions ?? [])].join(','),
      '-device',
      device('n0'),
    );
  } else if (netdev === 'user') {
    if (mq > 1) throw new Error('the user netdev has no multiqueue');
    args.push(
      '-netdev',
      ['user', 'id=n0', ...(opts.hostfwd ?? []).map((r) => `hostfwd=${r}`), ...(opts.netdevOptions ?? [])].join(','),
      '-device',
      device('n0'),
    );
  } else {
    args.push('-nic', 'none');
  }
  args.push(...(opts.extraArgs ?? []));
  return args;
}

let setprivOk: boolean | undefined;

/** `setpriv --pdeathsig KILL` (util-linux) makes QEMU die with us even when we are SIGKILLed. */
function deathSignalPrefix(): string[] {
  setprivOk ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  return setprivOk ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
}

function tail(text: string, n = 1500): string {
  return text.length <= n ? text : '…' + text.slice(-n);
}

/** Boots the guest. Resolves once QEMU is started (not once the guest is up: waitFor the marker). */
export async function startGuest(opts: StartGuestOptions = {}): Promise<GuestHandle> {
  const image = opts.image ?? (await ensureGuestImage());
  const accel = opts.accel ?? (await detectAccel());
  const base = existsSync(image.initrdUncompressed) ? image.initrdUncompressed : image.initrd;
  let initrd = base;
  if (opts.script !== undefined) {
    initrd = await combineInitrd(base, await makeScriptCpio(opts.script, opts.extraFiles));
  } else if (opts.extraFiles !== undefined && Object.keys(opts.extraFiles).length > 0) {
    throw new Error('extraFiles needs a script');
  }
  let bootImage = image;
  let userPrefix: string[] = [];
  if (opts.user !== undefined) {
    const u = opts.user;
    const dir = tempPath('readable');
    await mkdir(dir, { mode: 0o755 });
    await chmod(dir, 0o755);
    const kernel = path.join(dir, 'vmlinuz');
    const readableInitrd = path.join(dir, 'initrd.img');
    await copyFile(image.kernel, kernel);
    await copyFile(initrd, readableInitrd);
    await chmod(kernel, 0o644);
    await chmod(readableInitrd, 0o644);
    bootImage = { ...image, kernel };
    initrd = readableInitrd;
    // The temporary directory above it is this process's own (0700): let the user through.
    await chmod(path.dirname(dir), 0o711);
    // One setpriv: a second one changing the user would clear the first one's death signal.
    const ids = [`--reuid=${u.uid}`, `--regid=${u.gid}`, u.groups.length > 0 ? `--groups=${u.groups.join(',')}` : '--clear-groups'];
    const death = deathSignalPrefix();
    userPrefix = ['setpriv', ...death.slice(1, -1), ...ids, '--'];
  }
  const args = qemuArgs({ image: bootImage, initrd, accel, opts });
  const prefix = opts.user !== undefined ? userPrefix : deathSignalPrefix();
  const command = [...prefix, qemuBinary(), ...args];
  const interactive = opts.interactive === true;

  installExitHook();
  const child = spawn(command[0] ?? qemuBinary(), command.slice(1), {
    stdio: interactive ? 'inherit' : ['pipe', 'pipe', 'pipe'],
  });
  liveChildren.add(child);

  let output = '';
  let stderr = '';
  let timedOut = false;
  let failure: string | undefined;
  let done = false;
  const listeners = new Set<() => void>();
  const notify = (): void => {
    for (const l of [...listeners]) l();
  };
  const echoEnv = process.env.VUNET_GUEST_ECHO === '1';
  const echo: NodeJS.WritableStream | undefined =
    opts.echo === true || (opts.echo === undefined && echoEnv) ? process.stderr : opts.echo === false ? undefined : opts.echo;

  if (!interactive) {
    const dec = new StringDecoder('utf8');
    child.stdout?.on('data', (chunk: Buffer) => {
      const s = dec.write(chunk).replaceAll('\r', '');
      output += s;
      echo?.write(s);
      notify();
    });
    let vhostErrors = 0;
    child.stderr?.on('data', (chunk: Buffer) => {
      const s = chunk.toString('utf8');
      stderr += s;
      if (stderr.length > 256 * 1024) stderr = stderr.slice(-128 * 1024);
      // QEMU 7.2 retries a vhost-user start that the backend refuses (e.g. "you are asking more
      // queues than supported") forever, never booting: give up after a few rounds.
      vhostErrors += (s.match(/^qemu-system-\S+: -netdev vhost-user[^\n]*/gm) ?? []).length;
      if (vhostErrors >= 3 && failure === undefined) {
        failure = /^qemu-system-\S+: (-netdev vhost-user[^\n]*)/m.exec(s)?.[1] ?? 'vhost-user start failed';
        kill('SIGKILL');
      }
    });
    child.stdin?.on('error', () => {
      // QEMU gone; writes are dropped
    });
  }

  let timer: NodeJS.Timeout | undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const kill = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    if (done) return;
    child.kill(signal);
    if (signal !== 'SIGKILL' && killTimer === undefined) {
      killTimer = setTimeout(() => {
        if (!done) child.kill('SIGKILL');
      }, 3000);
      killTimer.unref();
    }
  };
  if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
    timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
    }, opts.timeoutMs);
    timer.unref();
  }

  const exited = new Promise<GuestExit>((resolve) => {
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
      stderr += `${err.message}\n`;
    });
    child.on('close', (code, signal) => {
      done = true;
      liveChildren.delete(child);
      if (timer !== undefined) clearTimeout(timer);
      if (killTimer !== undefined) clearTimeout(killTimer);
      const m = EXIT_MARKER_RE.exec(output);
      if (spawnError !== undefined && code === null && signal === null) code = 127;
      resolve({
        code,
        signal,
        timedOut,
        guestStatus: m?.[1] !== undefined ? Number(m[1]) : undefined,
        ...(failure !== undefined ? { failure } : {}),
      });
      notify();
    });
  });

  const waitFor = (re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> => {
    if (interactive) return Promise.reject(new Error('waitFor is unavailable for an interactive guest'));
    const plain = new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
    return new Promise<RegExpMatchArray>((resolve, reject) => {
      let t: NodeJS.Timeout | undefined;
      const finish = (err: Error | undefined, m?: RegExpMatchArray): void => {
        listeners.delete(check);
        if (t !== undefined) clearTimeout(t);
        if (err !== undefined) reject(err);
        else if (m !== undefined) resolve(m);
      };
      const describe = (why: string): Error =>
        new Error(
          `${why}${failure !== undefined ? ` (${failure})` : ''} waiting for ${String(re)}\n--- console (tail) ---\n${tail(output)}` +
            (stderr.trim() !== '' ? `\n--- qemu stderr ---\n${tail(stderr, 800)}` : ''),
        );
      const check = (): void => {
        const m = plain.exec(output);
        if (m !== null) finish(undefined, m);
        else if (done) finish(describe('QEMU exited'));
      };
      listeners.add(check);
      t = setTimeout(() => finish(describe(`timed out after ${timeoutMs} ms`)), timeoutMs);
      check();
    });
  };

  return {
    pid: child.pid,
    command,
    accel,
    get output() {
      return output;
    },
    get stderr() {
      return stderr;
    },
    waitFor,
    write(text: string) {
      if (!done && child.stdin !== null && child.stdin.writable) child.stdin.write(text);
    },
    exited,
    kill,
  };
}

// ------------------------------------------------------------------------------------------------
// CLI
// ------------------------------------------------------------------------------------------------

const USAGE = `usage: npx tsx scripts/qemu.ts [options] [-- extra qemu args]

Boots the vunet test guest with its serial console on this terminal (Ctrl-A x quits QEMU,
Ctrl-A c toggles the QEMU monitor). Without --script you get a shell; exiting it powers off.

  --socket PATH        vhost-user socket of a running vunet (guest gets eth0 on it)
  --user-net           use QEMU's user-mode (slirp) netdev instead
  --hostfwd RULE       with --user-net, e.g. tcp:127.0.0.1:5201-:5201 (repeatable)
  --script FILE        run FILE as /test.sh, print "VUNET-GUEST: exit N", power off;
                       the CLI exits with the script's status
  --shell              with --script: start the shell after the script instead of powering off
  --mem MIB            guest RAM (default 256)
  --smp N              vCPUs
  --mq N               queue pairs (vhost-user)
  --mac MAC            guest MAC (default ${DEFAULT_GUEST_MAC})
  --reconnect          reconnect=1 on the vhost-user chardev
  --accel kvm|tcg      skip detection (also env VUNET_ACCEL)
  --append ARGS        extra kernel command line
  --verbose            kernel messages on the console (no "quiet")
  --build              rebuild the image (vm-images/build.sh --force) first
  --print              print the QEMU command and exit
  -h, --help           this text`;

async function main(argv: string[]): Promise<number> {
  const opts: StartGuestOptions = { interactive: true };
  let scriptFile: string | undefined;
  let shell = false;
  let build = false;
  let print = false;
  const extra: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = (): number => {
      const s = val();
      const n = Number(s);
      if (!Number.isInteger(n) || n <= 0) throw new Error(`${a}: not a positive integer: ${s}`);
      return n;
    };
    switch (a) {
      case '--socket':
        opts.socketPath = val();
        break;
      case '--user-net':
        opts.qemuNetdev = 'user';
        break;
      case '--hostfwd':
        (opts.hostfwd ??= []).push(val());
        break;
      case '--script':
        scriptFile = val();
        break;
      case '--shell':
        shell = true;
        break;
      case '--mem':
        opts.memoryMiB = num();
        break;
      case '--smp':
        opts.smp = num();
        break;
      case '--mq':
        opts.mq = num();
        break;
      case '--mac':
        opts.mac = val();
        break;
      case '--reconnect':
        opts.reconnect = true;
        break;
      case '--accel': {
        const v = val();
        if (v !== 'kvm' && v !== 'tcg') throw new Error('--accel must be kvm or tcg');
        opts.accel = v;
        break;
      }
      case '--append':
        opts.append = val();
        break;
      case '--verbose':
        opts.verbose = true;
        break;
      case '--build':
        build = true;
        break;
      case '--print':
        print = true;
        break;
      case '-h':
      case '--help':
        process.stdout.write(USAGE + '\n');
        return 0;
      case '--':
        extra.push(...argv.slice(i + 1));
        i = argv.length;
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  if (extra.length > 0) opts.extraArgs = extra;
  if (scriptFile !== undefined) opts.script = readFileSync(scriptFile, 'utf8');
  if (shell) opts.append = [opts.append, 'vunet.shell=1'].filter((s) => s !== undefined).join(' ');
  if (opts.socketPath !== undefined && opts.qemuNetdev === 'user') throw new Error('--socket and --user-net exclude each other');

  opts.image = await ensureGuestImage({ force: build, log: (l) => process.stderr.write(l + '\n') });
  if (print) {
    const accel = opts.accel ?? (await detectAccel());
    const base = opts.image.initrdUncompressed;
    const initrd = opts.script !== undefined ? `${base}+script.cpio` : base;
    process.stdout.write([qemuBinary(), ...qemuArgs({ image: opts.image, initrd, accel, opts })].map(shellQuote).join(' ') + '\n');
    return 0;
  }
  const accel = opts.accel ?? (await detectAccel());
  if (opts.script !== undefined && !shell) {
    // Nothing to type: show the console and end with the script's exit status.
    opts.interactive = false;
    opts.echo = process.stdout;
    process.stderr.write(`vunet-qemu: booting (${accel}) to run ${scriptFile ?? 'the script'}\n`);
  } else {
    process.stderr.write(`vunet-qemu: booting (${accel}); Ctrl-A x quits QEMU, Ctrl-A c is the monitor\n`);
  }
  const g = await startGuest(opts);
  const r = await g.exited;
  if (r.code !== 0 || r.failure !== undefined) {
    process.stderr.write(`vunet-qemu: QEMU ended with ${r.signal ?? `exit ${r.code}`}${r.failure !== undefined ? `: ${r.failure}` : ''}\n`);
    if (g.stderr.trim() !== '') process.stderr.write(tail(g.stderr, 2000) + '\n');
  }
  if (opts.interactive === false) return r.code === 0 ? (r.guestStatus ?? 1) : 1;
  return r.code ?? 1;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`vunet-qemu: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
