// --pid-file: the process id, written once the vhost-user socket listens (a supervisor that waits
// for the file can connect at once), removed at a clean exit. A file naming a live vunet is
// refused; one naming a dead process or another program (its pid reused) is stale and replaced.
// Written as a new file renamed over the path, so a reader never sees it half written and a
// symlink planted at the path is replaced, not followed.
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The pid file is held by a live vunet, or cannot be read: one line for `vunet: <message>`. */
export class PidFileError extends Error {
  override readonly name = 'PidFileError';
}

/** Whether process `pid` runs vunet: its command line names bin/vunet.js or an installed `vunet`. */
function isVunet(pid: number): boolean {
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return false; // gone meanwhile, or not ours to see
  }
  return cmdline
    .split('\0')
    .slice(0, 4)
    .some((arg) => /^vunet(\.js)?$/.test(basename(arg)));
}

/** The pid `path` names when that process is a live vunet other than this one; else undefined. */
export function pidFileHolder(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new PidFileError(`cannot read --pid-file ${path}: ${code ?? String(err)}`);
  }
  const m = /^\s*([1-9][0-9]{0,9})\s*$/.exec(text);
  const pid = m ? Number(m[1]) : 0;
  if (pid === 0 || pid === process.pid) return undefined;
  return isVunet(pid) ? pid : undefined;
}

/** Throws PidFileError when a live vunet holds `path`. */
export function checkPidFile(path: string): void {
  const holder = pidFileHolder(path);
  if (holder !== undefined) throw new PidFileError(`--pid-file ${path} is held by a running vunet (pid ${holder}): stop it or choose another path`);
}

/** Writes this process's pid to `path` (mode 0644). Throws an errno error. */
export function writePidFile(path: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'wx', 0o644); // O_EXCL: never through a file or symlink already there
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
}

/** Removes `path` if it still names this process (another vunet may have taken it since). */
export function removePidFile(path: string): void {
  try {
    if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
  } catch {
    // gone already, or no longer ours to remove: nothing to do at exit
  }
}
