import {parseWire} from '../protocol/parse.js';
import {HeartbeatAnswerSchema, type Heartbeat, type HiveCommand} from '../protocol/wire.js';

export const workerSecretHeader = 'x-rbee-worker-secret';

export type HeartbeatLoopOptions = {
  hiveUrl: string;
  secret: string;
  intervalMs: number;
  /** With no acknowledged heartbeat for this long, the hive is gone: the worker must not outlive it. */
  orphanTimeoutMs: number;
  payload: () => Promise<Heartbeat>;
  onCommands: (commands: HiveCommand[]) => void;
  onOrphaned: () => void;
  log: (message: string) => void;
};

export type HeartbeatLoop = {beatNow(): Promise<void>; stop(): void};

export function startHeartbeatLoop(options: HeartbeatLoopOptions): HeartbeatLoop {
  let lastAck = Date.now();
  let stopped = false;
  let inFlight: Promise<void> | null = null;
  let lastComplaint = '';

  async function beat(): Promise<void> {
    const url = new URL('/v1/heartbeat', options.hiveUrl);
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: {'content-type': 'application/json', [workerSecretHeader]: options.secret},
        body: JSON.stringify(await options.payload()),
        signal: AbortSignal.timeout(Math.max(1_000, options.intervalMs)),
      });
      const body: unknown = await response.json().catch(() => null);
      if (!response.ok) {
        throw new Error(`hive answered ${response.status}: ${JSON.stringify(body)}`);
      }
      const answer = parseWire(HeartbeatAnswerSchema, body, 'heartbeat answer');
      if (!answer.ok) {
        throw new Error(answer.message);
      }
      lastAck = Date.now();
      lastComplaint = '';
      if (answer.value.commands.length > 0) {
        options.onCommands(answer.value.commands);
      }
    } catch (error) {
      const complaint = `heartbeat to ${url.origin} failed: ${(error as Error).message}`;
      if (complaint !== lastComplaint) {
        options.log(complaint);
        lastComplaint = complaint;
      }
    }
    if (!stopped && Date.now() - lastAck > options.orphanTimeoutMs) {
      stopped = true;
      options.onOrphaned();
    }
  }

  function beatOnce(): Promise<void> {
    inFlight ??= beat().finally(() => {
      inFlight = null;
    });
    return inFlight;
  }

  const timer = setInterval(() => {
    if (!stopped) {
      void beatOnce();
    }
  }, options.intervalMs);
  void beatOnce();

  return {
    beatNow: beatOnce,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}
