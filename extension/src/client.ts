// How the viewer talks to a server: the Jupyter server extension (/nbflow/api/)
// or the REST API (/runs) — the same routes, behind a different fetch.
import { RunEvent, TERMINAL } from './fold';
import { Wait } from './waits';

export interface RunSummary {
  run_id: string;
  workflow: string;
  status: string;
  reason?: string | null;
  created_at?: string | null;
  started_at?: string | null;
  ended_at?: string | null;
  duration_s?: number | null;
  notebook?: string | null;
  usage?: { total_tokens?: number; cost_usd?: number };
  wait?: Wait | null; // what a waiting run waits for
}

export type Fetch = (path: string, init?: RequestInit) => Promise<Response>;

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const RETRY_MS = [250, 1000, 2000, 5000];

/** Where a trace view reads a run's log and sends what a person asks of the run: the
 *  server's routes (``RunsClient``, over SSE) or the kernel (the notebook widget). A
 *  source without ``cancel`` has no Cancel button (an in-process run). */
export interface RunSource {
  follow(runId: string, after: string, onEvents: (events: RunEvent[]) => void, signal: AbortSignal): Promise<void>;
  sendInput(runId: string, name: string, value: unknown): Promise<unknown>;
  cancel?(runId: string): Promise<unknown>;
}

export class RunsClient implements RunSource {
  /** ``fetch`` takes paths relative to the routes' base ("runs", "runs/<id>/events"). */
  constructor(readonly fetch: Fetch) {}

  async runs(limit = 200): Promise<RunSummary[]> {
    const body = await this.json(`runs?limit=${limit}`);
    return body.runs as RunSummary[];
  }

  detail(runId: string): Promise<any> {
    return this.json(`runs/${encodeURIComponent(runId)}`);
  }

  cancel(runId: string): Promise<any> {
    return this.json(`runs/${encodeURIComponent(runId)}/cancel`, { method: 'POST' });
  }

  /** Answer the run's wait for input ``name``; an ApiError carries the server's message
   *  (the field a value fails, or why the run takes no answer). */
  sendInput(runId: string, name: string, value: unknown): Promise<any> {
    return this.json(`runs/${encodeURIComponent(runId)}/input/${encodeURIComponent(name)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ value })
    });
  }

  /** Say that this page draws the notebook output ``view`` of a run from the server, so
   *  the kernel that displayed it stops following the run (server extension only). */
  claimOutput(runId: string, view: string): Promise<any> {
    return this.json(`runs/${encodeURIComponent(runId)}/outputs/${encodeURIComponent(view)}`, { method: 'POST' });
  }

  /**
   * Follow a run's log from after ``after`` until its terminal event, resuming
   * from the last id received whenever the connection drops. Resolves when the
   * run has ended (or the signal aborts).
   */
  async follow(
    runId: string,
    after: string,
    onEvents: (events: RunEvent[]) => void,
    signal: AbortSignal
  ): Promise<void> {
    let last = after;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const path = `runs/${encodeURIComponent(runId)}/events?after=${encodeURIComponent(last)}`;
        const response = await this.fetch(path, { signal, headers: { Accept: 'text/event-stream' } });
        if (response.status === 404) {
          throw new ApiError(404, `run ${runId} not found`);
        }
        if (!response.ok || !response.body) {
          throw new Error(`HTTP ${response.status}`);
        }
        let ended = false;
        await readSse(response.body, signal, events => {
          failures = 0;
          last = events[events.length - 1].id ?? last;
          ended = ended || events.some(e => TERMINAL.has(e.type));
          onEvents(events);
        });
        if (ended) {
          return;
        }
      } catch (error) {
        if (signal.aborted) {
          return;
        }
        if (error instanceof ApiError && error.status === 404) {
          throw error;
        }
      }
      await sleep(RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)], signal);
    }
  }

  private async json(path: string, init?: RequestInit): Promise<any> {
    const response = await this.fetch(path, init);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new ApiError(response.status, body?.error?.message ?? body?.message ?? `HTTP ${response.status}`);
    }
    return body;
  }
}

/** Server-Sent Events from a response body, handed over in batches (one per chunk read). */
export async function readSse(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  onEvents: (events: RunEvent[]) => void
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const abort = () => reader.cancel().catch(() => undefined);
  signal.addEventListener('abort', abort);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        return;
      }
      buffer += decoder.decode(value, { stream: true });
      const cut = buffer.lastIndexOf('\n\n');
      if (cut < 0) {
        continue;
      }
      const events = parseFrames(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (events.length) {
        onEvents(events);
      }
    }
  } finally {
    signal.removeEventListener('abort', abort);
  }
}

export function parseFrames(text: string): RunEvent[] {
  const events: RunEvent[] = [];
  for (const frame of text.split('\n\n')) {
    let id: string | undefined;
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith('id:')) {
        id = line.slice(3).trim();
      } else if (line.startsWith('data:')) {
        data += line.slice(5).trimStart();
      }
    }
    if (data) {
      const event = JSON.parse(data) as RunEvent;
      event.id = event.id ?? id;
      events.push(event);
    }
  }
  return events;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise(resolve => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
