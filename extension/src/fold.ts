// A run's event log folded into its state, event by event: the same fold as
// nbflow/_fold.py (RunState.apply). `toDict()` here and `RunState.to_dict()` there
// are the specification both meet, case by case, in tests/vectors.
//
// Where a log is unusual both follow the same rules: an event without `ts` still
// applies and the times it would set are unknown (null); an event for a span whose
// span.started is not in the log makes that span, named `?`; attributes merge, later
// keys winning; a field cut to fit the event size limit is kept as the text it was
// cut to, and `attrs` that are no longer an object are left out.

import { pyJson, applyStatePatch } from './state';
import { Wait } from './waits';

export type RunEvent = { type: string; ts?: number; id?: string; [key: string]: any };

export const TERMINAL = new Set(['run.succeeded', 'run.failed', 'run.cancelled']);
export const TERMINAL_STATUS = new Set(['succeeded', 'failed', 'cancelled']);

const INPUT_TOKENS = 'gen_ai.usage.input_tokens';
const OUTPUT_TOKENS = 'gen_ai.usage.output_tokens';
const COST = 'nbflow.cost_usd';
const CACHE_KEY = 'nbflow.cache_key';
const RETRY_FIELDS = ['attempt', 'error_type', 'error', 'traceback', 'delay_s', 'ts'];
const NOT_RETRY_FIELDS = new Set(['type', 'id', 'span_id']);

/** Tokens and cost: a span's own, or with every span below it (its rollup). */
export interface Spend {
  input_tokens: number;
  output_tokens: number;
  tokens: number;
  cost_usd: number;
}

/** One failed attempt of a span, as its span.retry event told it. */
export interface Retry {
  attempt: number | null;
  error_type: string | null;
  error: string | null;
  traceback: string | null;
  delay_s: number | null;
  ts: number | null;
  [key: string]: unknown;
}

export interface Span {
  span_id: string;
  parent_id: string | null;
  name: string;
  kind: string;
  step: string;
  status: string;
  start: number | null; // seconds; null when the log does not say
  end: number | null;
  duration_ms: number | null;
  depth: number;
  attempts: number;
  restarts: number; // times a later attempt of the run started it again
  cached: boolean;
  cache_key: string | null;
  input: unknown; // preview of the arguments (span.started)
  output: unknown; // preview of the return value (span.finished)
  error: string | null;
  error_type: string | null;
  traceback: string | null;
  retries: Retry[];
  attrs: Record<string, unknown>; // merged over its events, later keys winning
  model: string | null;
  input_tokens: number; // its own spend, summed over its finishes
  output_tokens: number;
  tokens: number;
  cost_usd: number;
  rollup: Spend; // the span and every span below it
  children: string[];
}

/** A named progress step (nf.progress): its state, detail and when it ran. */
export interface Step {
  name: string;
  state: string;
  detail: unknown;
  start: number | null;
  end: number | null;
  duration_ms: number | null;
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

const STEP_END: Record<string, string> = { succeeded: 'done', failed: 'failed', cancelled: 'cancelled' };

export class RunState {
  workflow = '';
  status = 'queued';
  reason: string | null = null;
  error: string | null = null;
  errorType: string | null = null;
  traceback: string | null = null;
  output: unknown = null; // the return value (a JSON preview)
  emitted = ''; // what the run streamed with nf.emit
  createdAt: number | null = null;
  startedAt: number | null = null;
  endedAt: number | null = null;
  restarts = 0;
  truncated = false;
  spans = new Map<string, Span>();
  roots: string[] = [];
  steps = new Map<string, Step>();
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
  private spent: Usage = { input_tokens: 0, output_tokens: 0, total_tokens: 0, cost_usd: 0, llm_calls: 0 };
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

  /** Tokens and cost of every call the log says was made (cache hits spent nothing). */
  usage(): Usage {
    if (this.snapshotUsage) {
      // a state drawn from a snapshot is replaced, not updated, once the log replays
      return this.snapshotUsage;
    }
    return { ...this.spent, total_tokens: this.spent.input_tokens + this.spent.output_tokens };
  }

  /** The state as JSON: what both folds must agree on (tests/vectors). */
  toDict(): Record<string, unknown> {
    return {
      run_id: this.runId,
      status: this.status,
      reason: this.reason,
      error: this.error,
      error_type: this.errorType,
      traceback: this.traceback,
      output: this.output,
      created_at: this.createdAt,
      started_at: this.startedAt,
      ended_at: this.endedAt,
      restarts: this.restarts,
      truncated: this.truncated,
      workflow: this.workflow || null,
      emitted: this.emitted,
      usage: this.usage(),
      steps: Array.from(this.steps.values(), step => ({ ...step })),
      spans: Array.from(this.spans.values(), spanDict),
      wait: this.wait,
      inputs: Object.fromEntries(this.inputs),
      children: Array.from(this.children.values(), child => ({ ...child })),
      warnings: [...this.warnings],
      published: Object.fromEntries(this.published)
    };
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

  /** The event's span; one named `?` when its start is not in the log. */
  spanOf(e: RunEvent): Span {
    const span = this.spans.get(String(e.span_id));
    if (span) {
      return span;
    }
    const made = newSpan({ type: 'span.started', span_id: e.span_id });
    this.addSpan(made);
    return made;
  }

  /** The span's parent, if it was in the log when the span began (never a cycle). */
  parentOf(span: Span): Span | undefined {
    const parent = span.parent_id === null ? undefined : this.spans.get(span.parent_id);
    return parent && parent.depth === span.depth - 1 ? parent : undefined;
  }

  /** One finish's spend: on the span, up through its parents' rollups, on the run. */
  addSpend(span: Span, spend: Spend): void {
    span.input_tokens += spend.input_tokens;
    span.output_tokens += spend.output_tokens;
    span.tokens = span.input_tokens + span.output_tokens;
    span.cost_usd += spend.cost_usd;
    for (let node: Span | undefined = span; node; node = this.parentOf(node)) {
      addTo(node.rollup, spend);
    }
    this.spent.input_tokens += spend.input_tokens;
    this.spent.output_tokens += spend.output_tokens;
    this.spent.cost_usd += spend.cost_usd;
    this.spent.llm_calls += 1;
  }
}

/** A span as JSON, as nbflow/_spanstate.py's SpanState.to_dict writes it. */
export function spanDict(span: Span): Record<string, unknown> {
  const { children: _children, ...rest } = span;
  return { ...rest, retries: span.retries.map(r => ({ ...r })), attrs: { ...span.attrs }, rollup: { ...span.rollup } };
}

export function emptySpend(): Spend {
  return { input_tokens: 0, output_tokens: 0, tokens: 0, cost_usd: 0 };
}

function addTo(totals: Spend, spend: Spend): void {
  totals.input_tokens += spend.input_tokens;
  totals.output_tokens += spend.output_tokens;
  totals.tokens += spend.input_tokens + spend.output_tokens;
  totals.cost_usd += spend.cost_usd;
}

/** A finite number, or null (what the Python fold calls `number`). */
export function numberOf(value: unknown): number | null {
  return typeof value === 'number' && isFinite(value) ? value : null;
}

function tsOf(e: RunEvent): number | null {
  return numberOf(e.ts);
}

function num(value: unknown): number {
  return numberOf(value) ?? 0;
}

function text(value: unknown, otherwise: string): string {
  return value === null || value === undefined ? otherwise : String(value);
}

// A key set as data, whatever its name: `obj[key] = v` with key "__proto__" would
// change the object's prototype instead of adding the key a log (or Python) has.
function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// What one span.finished says was spent; the runtime's metadata counts the same
// (nbflow/runtime/writer.py). Each finish is one call that was made: a span finished
// again by a later attempt (its result could not be recorded) spent again.
function spendOf(e: RunEvent): Spend | null {
  const attrs = e.attrs;
  if (e.cached === true || !isObject(attrs)) {
    return null;
  }
  const inp = numberOf(attrs[INPUT_TOKENS]);
  const out = numberOf(attrs[OUTPUT_TOKENS]);
  if (inp === null && out === null) {
    return null;
  }
  const spend = { input_tokens: Math.trunc(inp ?? 0), output_tokens: Math.trunc(out ?? 0), tokens: 0, cost_usd: num(attrs[COST]) };
  spend.tokens = spend.input_tokens + spend.output_tokens;
  return spend;
}

function retryOf(e: RunEvent): Retry {
  const entry: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(e)) {
    if (!NOT_RETRY_FIELDS.has(key)) {
      setKey(entry, key, value);
    }
  }
  for (const key of RETRY_FIELDS) {
    setKey(entry, key, entry[key] ?? null);
  }
  entry.ts = tsOf(e);
  return entry as Retry;
}

function newSpan(e: RunEvent): Span {
  return {
    span_id: String(e.span_id),
    parent_id: e.parent_id === null || e.parent_id === undefined ? null : String(e.parent_id),
    name: text(e.name, '?'),
    kind: text(e.kind, 'component'),
    step: text(e.step, ''),
    status: 'running',
    start: tsOf(e),
    end: null,
    duration_ms: null,
    depth: 0,
    attempts: 1,
    restarts: 0,
    cached: false,
    cache_key: null,
    input: e.input ?? null,
    output: null,
    error: null,
    error_type: null,
    traceback: null,
    retries: [],
    attrs: {},
    model: null,
    input_tokens: 0,
    output_tokens: 0,
    tokens: 0,
    cost_usd: 0,
    rollup: emptySpend(),
    children: []
  };
}

function duration(start: number | null, end: number | null): number | null {
  return start !== null && end !== null ? (end - start) * 1000 : null;
}

function ended(s: RunState, e: RunEvent): void {
  s.status = e.type === 'run.succeeded' ? 'succeeded' : e.type === 'run.failed' ? 'failed' : 'cancelled';
  const ts = tsOf(e);
  s.endedAt = ts ?? s.endedAt;
  s.output = e.output ?? null;
  s.error = e.error ?? null;
  s.errorType = e.error_type ?? null;
  s.traceback = e.traceback ?? null;
  s.reason = e.reason ?? s.reason;
  const final = STEP_END[s.status];
  for (const step of s.steps.values()) {
    if (step.state === 'running' || step.state === 'retrying') {
      step.state = final;
    }
    if (step.state !== 'pending') {
      step.end = step.end ?? ts; // a step declared but never begun did not end
    }
    step.duration_ms = duration(step.start, step.end);
  }
  for (const span of s.spans.values()) {
    if (span.status === 'running') {
      span.status = s.status === 'cancelled' ? 'cancelled' : 'error';
      span.end = ts;
      span.duration_ms = duration(span.start, span.end);
    }
  }
}

function spanStarted(s: RunState, e: RunEvent): void {
  const span = s.spans.get(String(e.span_id));
  if (!span) {
    s.addSpan(newSpan(e));
    return;
  }
  // The same step started again: a later attempt of the run re-runs it.
  span.restarts += 1;
  span.start = tsOf(e);
  span.end = null;
  span.duration_ms = null;
  span.status = 'running';
  span.output = span.error = span.error_type = span.traceback = null;
  span.cached = false;
  span.input = e.input ?? span.input;
}

function spanFinished(s: RunState, e: RunEvent): void {
  const span = s.spanOf(e);
  span.status = text(e.status, 'ok');
  span.end = tsOf(e);
  span.duration_ms = duration(span.start, span.end);
  span.attempts = e.attempts ?? span.attempts;
  span.cached = e.cached === true;
  span.output = e.output ?? null;
  span.error = e.error ?? null;
  span.error_type = e.error_type ?? null;
  span.traceback = e.traceback ?? null;
  if (isObject(e.attrs)) {
    for (const [key, value] of Object.entries(e.attrs)) {
      setKey(span.attrs, key, value);
    }
    const model = span.attrs['gen_ai.response.model'] || span.attrs['gen_ai.request.model'];
    span.model = model === null || model === undefined || model === '' ? null : String(model);
    const key = span.attrs[CACHE_KEY];
    span.cache_key = key === null || key === undefined ? null : String(key);
  }
  const spend = spendOf(e);
  if (spend) {
    s.addSpend(span, spend);
  }
}

function progress(s: RunState, e: RunEvent): void {
  const state = text(e.state, 'running');
  const ts = tsOf(e);
  if (state === 'running') {
    // a new step running ends the one before it
    for (const other of s.steps.values()) {
      if (other.state === 'running') {
        other.state = 'done';
        other.end = other.end ?? ts;
        other.duration_ms = duration(other.start, other.end);
      }
    }
  }
  const name = text(e.step, '');
  let step = s.steps.get(name);
  if (!step) {
    step = { name, state, detail: null, start: null, end: null, duration_ms: null };
    s.steps.set(name, step);
  }
  if (step.start === null && state !== 'pending') {
    step.start = ts; // declared ahead is not begun
  }
  step.state = state;
  step.detail = e.detail ?? null;
  if (state === 'done' || state === 'failed') {
    step.end = step.end ?? ts;
  } else if (state === 'running') {
    step.end = null;
  }
  step.duration_ms = duration(step.start, step.end);
}

const HANDLERS: Record<string, (s: RunState, e: RunEvent) => void> = {
  'run.queued': (s, e) => {
    s.workflow = e.workflow ?? s.workflow;
    s.createdAt = tsOf(e);
  },
  'run.started': (s, e) => {
    s.workflow = e.workflow || s.workflow;
    s.status = 'running';
    s.startedAt = s.startedAt ?? tsOf(e);
    s.createdAt = s.createdAt ?? tsOf(e);
  },
  'run.restarted': (s, e) => {
    s.status = 'queued';
    s.reason = e.reason ?? null;
    s.restarts += 1;
  },
  'run.succeeded': ended,
  'run.failed': ended,
  'run.cancelled': ended,
  'span.started': spanStarted,
  'span.retry': (s, e) => {
    const span = s.spanOf(e);
    span.retries.push(retryOf(e));
    span.attempts = (Number.isInteger(e.attempt) ? e.attempt : 0) + 1;
  },
  'span.finished': spanFinished,
  progress,
  // nf.emit(value): a JSON value shows as the text Python's fold gives it (json.dumps)
  output: (s, e) => {
    s.emitted += 'value' in e ? pyJson(e.value) : text(e.chunk, '');
  },
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
    s.warnings.push(text(e.message, ''));
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
