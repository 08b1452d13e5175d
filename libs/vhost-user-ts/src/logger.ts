// The library logs through this interface; pino's Logger satisfies it, and the default is silent.
export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  isLevelEnabled?(level: string): boolean;
}

const noop: LogFn = () => undefined;
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };
