// The process logger: pino, pretty and colourised on a terminal, JSON lines otherwise. Both write
// synchronously to stdout so the last lines before an exit are not lost.
import { pino, type Level, type Logger } from 'pino';
import pretty from 'pino-pretty';

export interface LoggerOptions {
  /** Human-readable lines; default: whether stdout is a TTY. */
  pretty?: boolean;
  /** File descriptor to write to (default 1, stdout). */
  fd?: number;
}

export function createLogger(level: Level | 'silent', options: LoggerOptions = {}): Logger {
  return pino({ level }, destination(options));
}

/** The lines held back while the process starts (at most this many; a start logs a handful). */
const HELD_MAX = 1000;

/**
 * A logger whose lines are held until the start is known to have worked: started() writes them
 * and lets later lines through. A start that fails never calls it, so it prints only its error.
 */
export function createStartLogger(level: Level | 'silent', options: LoggerOptions = {}): { logger: Logger; started: () => void } {
  const out = destination(options);
  let held: string[] | undefined = [];
  const gate = {
    write(line: string): void {
      if (held === undefined) out.write(line);
      else if (held.length < HELD_MAX) held.push(line);
    },
  };
  return {
    logger: pino({ level }, gate),
    started: () => {
      const lines = held ?? [];
      held = undefined;
      for (const line of lines) out.write(line);
    },
  };
}

function destination(options: LoggerOptions): { write(line: string): unknown } {
  const fd = options.fd ?? 1;
  const usePretty = options.pretty ?? process.stdout.isTTY === true;
  const stream = usePretty
    ? pretty({
        colorize: true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
        sync: true,
        destination: fd,
      })
    : pino.destination({ dest: fd, sync: true });
  return stream;
}
