// The IPC messages between the harness and a fuzz target process (target.ts).

export interface TargetConfig {
  socketPath: string;
  /** Fake host sockets instead of real ones (when no network namespace can hold the target). */
  fakeHost: boolean;
  /** vunet's memory budget (bytes). */
  maxMemory: number;
  mtu?: number;
}

export type TargetRequest = { id: number; cmd: 'probe' } | { id: number; cmd: 'status' } | { cmd: 'exit' };

/** What the harness checks after each stretch of input. */
export interface Probe {
  rss: number;
  heapUsed: number;
  external: number;
  /** Open file descriptors of the target (-1 when unknown). */
  fds: number;
  connected: boolean;
  device: { txFrames: number; txBytes: number; txDropped: number; rxFrames: number; rxBytes: number; rxDropped: number; txFailed: number; txSlices: number };
  loop: { maxBatchMs: number; batchesOver50ms: number; delayMaxMs: number; delayP99Ms: number };
  /** Internal errors caught at a batch boundary (a bug that cost one event). */
  failures: { count: number; last: string };
  memory: { used: number; peak: number; limit: number; refused: number };
  /** vhost-user server counters: `errors - protocolErrors` are exceptions that are not the
   *  frontend's mistakes (bugs in the library or the device). */
  server: { connections: number; refused: number; idleReplaced: number; silent: number; errors: number; protocolErrors: number; memoryFaults: number };
  queues: { index: number; ready: boolean; broken: string | null; malformed: number; popped: number }[];
}

export type TargetReply =
  { type: 'ready'; pid: number } | { type: 'probe'; id: number; probe: Probe } | { type: 'status'; id: number; status: Record<string, unknown> };
