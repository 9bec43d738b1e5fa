// A run's event log folded into its state, event by event: the same rules as
// nbflow/_fold.py (RunState.apply), so the viewer and the Python views agree.

import { pyJson, applyStatePatch } from './state';
import { Wait } from './waits';

export type RunEvent = { type: string; ts?: number; id?: string; [key: string]: any };

export const TERMINAL = new Set(['run.succeeded', 'run.failed', 'run.cancelled']);
export const TERMINAL_STATUS = new Set(['succeeded', 'failed', 'cancelled']);

export interface Span {
  span_id: string;
  parent_id: string | null;
  name: string;
  kind: string;
  status: string;
  start: number | null; // seconds; null when only a snapshot described the span
  end: number | null;
  duration_ms: number | null;
  attempts: number;
  cached: boolean;
  error: string | null;
  input_tokens: number;
  output_tokens: number;
  tokens: number;
  cost_usd: number;
  model: string | null;
  depth: number;
  children: string[];
}

/** A run this run started (``wf.submit`` inside it), as its child.* events tell. */
export interface Child {
  child_id: string;
  workflow: string | null;
  status: string; // running until child.ended says how it ended
  total_tokens: number;
  cost_usd: number;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
  cost_usd: number;
  llm_calls: number;
}

const MAX_OUTPUT_CHARS = 200_000;

export class RunState {
  workflow = '';
  status = 'queued';
  reason: string | null = null;
  error: string | null = null;
  errorType: string | null = null;
  traceback: string | null = null;
  createdAt: number | null = null;
  startedAt: number | null = null;
  endedAt: number | null = null;
  restarts = 0;
  truncated = false;
  spans = new Map<string, Span>();
  roots: string[] = [];
  progress = new Map<string, string>();
  output = '';
  wait: Wait | null = null; // what a waiting run waits for
  inputs = new Map<string, unknown>(); // answers it was sent, by name
  children = new Map<string, Child>(); // in the order they were started
  warnings: string[] = []; // what the worker said about the run (a blocked loop)
  published = new Map<string, unknown>(); // nf.publish: each state's value so far
  // Bumped when a published state changes, so views know to redraw it.
  publishedVersion = 0;
  // A patch that did not apply (a log cut short by truncation): the name, and why.
  publishErrors = new Map<string, string>();
  lastId = '0-0';
  count = 0;
  // Bumped when spans are added, so views know to recompute the tree's row order.
  structure = 0;
  private snapshotUsage: Usage | null = null;

  constructor(readonly runId: string) {}

  get done(): boolean {
    return TERMINAL_STATUS.has(this.status);
  }

  apply(e: RunEvent): void {
    this.count += 1;
    if (e.id) {
      this.lastId = e.id;
    }
    const handler = HANDLERS[e.type];
    if (handler) {
      handler(this, e);
    }
  }

  usage(): Usage {
    if (this.snapshotUsage) {
      // a state drawn from a snapshot is replaced, not updated, once the log replays
      return this.snapshotUsage;
    }
    const totals: Usage = { input_tokens: 0, output_tokens: 0, total_tokens: 0, cost_usd: 0, llm_calls: 0 };
    for (const span of this.spans.values()) {
      if (span.kind !== 'llm' || span.cached) {
        continue;
      }
      totals.llm_calls += 1;
      totals.input_tokens += span.input_tokens;
      totals.output_tokens += span.output_tokens;
      totals.cost_usd += span.cost_usd;
    }
    totals.total_tokens = totals.input_tokens + totals.output_tokens;
    return totals;
  }

  /** Spans in tree order (parents before children), skipping those under a collapsed span. */
  rows(collapsed: Set<string>): Span[] {
    const out: Span[] = [];
    const stack = [...this.roots].reverse();
    while (stack.length) {
      const span = this.spans.get(stack.pop()!)!;
      out.push(span);
      if (!collapsed.has(span.span_id)) {
        for (let i = span.children.length - 1; i >= 0; i--) {
          stack.push(span.children[i]);
        }
      }
    }
    return out;
  }

  addSpan(span: Span): void {
    const parent = span.parent_id ? this.spans.get(span.parent_id) : undefined;
    span.depth = parent ? parent.depth + 1 : 0;
    this.spans.set(span.span_id, span);
    (parent ? parent.children : this.roots).push(span.span_id);
    this.structure += 1;
  }

  setSnapshotUsage(usage: Usage): void {
    this.snapshotUsage = usage;
  }

  appendOutput(chunk: string): void {
    this.output += chunk;
    if (this.output.length > MAX_OUTPUT_CHARS) {
      this.output = this.output.slice(-MAX_OUTPUT_CHARS / 2);
    }
  }
}

function newSpan(e: RunEvent): Span {
  return {
    span_id: String(e.span_id),
    parent_id: e.parent_id ?? null,
    name: String(e.name ?? '?'),
    kind: String(e.kind ?? 'component'),
    status: 'running',
    start: e.ts ?? null,
    end: null,
    duration_ms: null,
    attempts: 1,
    cached: false,
    error: null,
    input_tokens: 0,
    output_tokens: 0,
    tokens: 0,
    cost_usd: 0,
    model: null,
    depth: 0,
    children: []
  };
}

function num(value: unknown): number {
  return typeof value === 'number' && isFinite(value) ? value : 0;
}

function ended(s: RunState, e: RunEvent): void {
  s.status = e.type === 'run.succeeded' ? 'succeeded' : e.type === 'run.failed' ? 'failed' : 'cancelled';
  s.endedAt = e.ts ?? s.endedAt;
  s.error = e.error ?? null;
  s.errorType = e.error_type ?? null;
  s.traceback = e.traceback ?? null;
  s.reason = e.reason ?? s.reason;
  const final = s.status === 'succeeded' ? 'done' : 'failed';
  for (const [step, state] of s.progress) {
    if (state === 'running' || state === 'retrying') {
      s.progress.set(step, final);
    }
  }
  for (const span of s.spans.values()) {
    if (span.status === 'running') {
      span.status = s.status === 'cancelled' ? 'cancelled' : 'error';
      span.end = e.ts ?? null;
      span.duration_ms = span.start !== null && span.end !== null ? (span.end - span.start) * 1000 : null;
    }
  }
}

const HANDLERS: Record<string, (s: RunState, e: RunEvent) => void> = {
  'run.queued': (s, e) => {
    s.workflow = e.workflow ?? s.workflow;
    s.createdAt = e.ts ?? null;
  },
  'run.started': (s, e) => {
    s.workflow = e.workflow || s.workflow;
    s.status = 'running';
    s.startedAt = s.startedAt ?? e.ts ?? null;
    s.createdAt = s.createdAt ?? e.ts ?? null;
  },
  'run.restarted': (s, e) => {
    s.status = 'queued';
    s.reason = e.reason ?? null;
    s.restarts += 1;
  },
  'run.succeeded': ended,
  'run.failed': ended,
  'run.cancelled': ended,
  'span.started': (s, e) => {
    const span = s.spans.get(e.span_id);
    if (span) {
      // the same step started again after a restart
      span.start = e.ts ?? span.start;
      span.status = 'running';
      span.end = null;
      span.duration_ms = null;
      return;
    }
    s.addSpan(newSpan(e));
  },
  'span.retry': (s, e) => {
    const span = s.spans.get(e.span_id);
    if (span) {
      span.attempts = num(e.attempt) + 1;
    }
  },
  'span.finished': (s, e) => {
    const span = s.spans.get(e.span_id);
    if (!span) {
      return;
    }
    const attrs = e.attrs ?? {};
    span.status = e.status ?? 'ok';
    span.end = e.ts ?? null;
    span.duration_ms = span.start !== null && span.end !== null ? (span.end - span.start) * 1000 : null;
    span.attempts = e.attempts ?? span.attempts;
    span.cached = Boolean(e.cached);
    span.error = e.error ?? null;
    span.input_tokens = num(attrs['gen_ai.usage.input_tokens']);
    span.output_tokens = num(attrs['gen_ai.usage.output_tokens']);
    span.tokens = span.input_tokens + span.output_tokens;
    span.cost_usd = num(attrs['nbflow.cost_usd']);
    span.model = attrs['gen_ai.response.model'] ?? attrs['gen_ai.request.model'] ?? null;
  },
  progress: (s, e) => {
    const state = e.state ?? 'running';
    if (state === 'running') {
      for (const [step, value] of s.progress) {
        if (value === 'running') {
          s.progress.set(step, 'done');
        }
      }
    }
    s.progress.set(String(e.step), state);
  },
  // nf.emit(value): a JSON value shows as the text Python's fold gives it (json.dumps)
  output: (s, e) => s.appendOutput('value' in e ? pyJson(e.value) : String(e.chunk ?? '')),
  'state.patch': (s, e) => {
    const name = String(e.name);
    try {
      s.published.set(name, applyStatePatch(s.published.get(name) ?? null, Array.isArray(e.patch) ? e.patch : []));
      s.publishErrors.delete(name);
    } catch (error) {
      s.publishErrors.set(name, error instanceof Error ? error.message : String(error));
    }
    s.publishedVersion += 1;
  },
  'log.truncated': s => {
    s.truncated = true;
  },
  warning: (s, e) => {
    s.warnings.push(String(e.message ?? ''));
  },
  'run.waiting': (s, e) => {
    s.status = 'waiting';
    s.wait = e.wait ?? null;
  },
  'run.resumed': s => {
    s.status = 'queued';
    s.wait = null;
  },
  'input.received': (s, e) => {
    s.inputs.set(String(e.name), e.value);
  },
  'child.started': (s, e) => {
    const id = String(e.child_id);
    s.children.set(id, { child_id: id, workflow: e.workflow ?? null, status: 'running', total_tokens: 0, cost_usd: 0 });
  },
  'child.ended': (s, e) => {
    const id = String(e.child_id);
    const child = s.children.get(id) ?? { child_id: id, workflow: null, status: 'running', total_tokens: 0, cost_usd: 0 };
    child.status = e.status ?? child.status;
    child.total_tokens = num(e.total_tokens);
    child.cost_usd = num(e.cost_usd);
    s.children.set(id, child);
  }
};
