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
  return pino({ level }, stream);
}
