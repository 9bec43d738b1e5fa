// One span, in full: its input and output, for an LLM call the messages sent and
// received (tool calls included) with model, finish reason, tokens, time to first
// token and cost; every attempt's error and traceback; the cache key and whether it
// hit; and every attribute. Framework-free DOM, drawn when the span changes.
import { Retry, RunState, Span } from './fold';
import { JsonView } from './jsonview';

export class SpanInspector {
  readonly node: HTMLElement;
  private key = '';

  constructor(private close: () => void) {
    this.node = el('aside', 'nbflow-inspector');
    this.node.hidden = true;
  }

  show(state: RunState, spanId: string | null): void {
    const span = spanId ? state.spans.get(spanId) : undefined;
    const key = span ? versionOf(span) : '';
    if (key === this.key) {
      return;
    }
    this.key = key;
    this.node.hidden = !span;
    this.node.dataset.span = span?.span_id ?? '';
    this.node.replaceChildren(...(span ? this.sections(state, span) : []));
  }

  private sections(state: RunState, span: Span): HTMLElement[] {
    const close = el('button', 'nbflow-inspector-close', '×') as HTMLButtonElement;
    close.type = 'button';
    close.title = 'close';
    close.addEventListener('click', () => this.close());
    const head = el('div', 'nbflow-inspector-head');
    head.append(
      el('span', `nbflow-kind nbflow-kind-${span.kind}`, span.kind),
      el('span', 'nbflow-inspector-name', span.name),
      el('span', `nbflow-badge nbflow-span-badge nbflow-span-badge-${span.status}`, span.status),
      el('span', 'nbflow-fill'),
      close
    );
    const llm = span.kind === 'llm';
    return [
      head,
      facts(state, span),
      ...(llm ? conversation(span) : []),
      ...(llm ? [] : [jsonSection('Input', 'input', span.input), jsonSection('Output', 'output', span.output)]),
      ...attempts(span),
      attributes(span.attrs)
    ].filter((node): node is HTMLElement => node !== null);
  }
}

function versionOf(span: Span): string {
  const attrs = Object.keys(span.attrs).length;
  return [span.span_id, span.status, span.end, span.attempts, span.retries.length, span.restarts, span.cached, attrs, span.tokens].join('|');
}

/** Facts as label/value pairs: timing, attempts, cache, and for a call its model and usage. */
function facts(state: RunState, span: Span): HTMLElement {
  const attrs = span.attrs;
  const started = span.start !== null && state.startedAt !== null ? span.start - state.startedAt : null;
  const total = span.rollup;
  const reasons = attrs['gen_ai.response.finish_reasons'];
  const ttft = attrs['nbflow.ttft_ms'];
  const rows: [string, string][] = [
    ['span id', span.span_id],
    ['started', started === null ? '' : `+${formatDuration(Math.max(started, 0))}`],
    ['duration', formatDuration(span.duration_ms === null ? null : span.duration_ms / 1000)],
    ['attempts', span.attempts > 1 ? String(span.attempts) : ''],
    ['restarts', span.restarts ? String(span.restarts) : ''],
    ['cache', span.cached ? 'hit' : span.cache_key ? 'miss' : ''],
    ['cache key', span.cache_key ?? ''],
    ['model', span.model ?? ''],
    ['finish reason', Array.isArray(reasons) ? reasons.join(', ') : reasons ? String(reasons) : ''],
    ['tokens', span.tokens ? `${span.tokens.toLocaleString()} (${span.input_tokens.toLocaleString()} in / ${span.output_tokens.toLocaleString()} out)` : ''],
    ['time to first token', typeof ttft === 'number' ? formatDuration(ttft / 1000) : ''],
    ['cost', span.kind === 'llm' || span.cost_usd ? formatCost(span.cost_usd) : ''],
    ['with children', span.children.length && (total.tokens || total.cost_usd) ? `${total.tokens.toLocaleString()} tokens · ${formatCost(total.cost_usd)}` : '']
  ];
  const list = el('dl', 'nbflow-facts');
  for (const [label, value] of rows) {
    if (value) {
      const term = el('dt', '', label);
      term.dataset.fact = label;
      list.append(term, el('dd', '', value));
    }
  }
  return list;
}

/** An LLM call: the messages sent (from the request) and what came back. */
function conversation(span: Span): HTMLElement[] {
  const request = isObject(span.input) ? span.input : {};
  const sent = messagesOf(request);
  const box = section('Messages', 'messages');
  for (const message of sent) {
    box.append(messageNode(message, 'sent'));
  }
  if (span.output !== null && span.output !== undefined) {
    box.append(messageNode(replyOf(span.output), 'received'));
  }
  if (!sent.length && (span.output === null || span.output === undefined)) {
    box.append(el('div', 'nbflow-muted', 'no messages recorded (record_content off, or not finished)'));
  }
  const rest = Object.fromEntries(Object.entries(request).filter(([k]) => k !== 'messages' && k !== 'input'));
  const more = Object.keys(rest).length ? jsonSection('Request', 'request', rest) : null;
  return more ? [box, more] : [box];
}

function messagesOf(request: Record<string, unknown>): Record<string, unknown>[] {
  const given = request.messages ?? request.input;
  if (typeof given === 'string') {
    return [{ role: 'user', content: given }];
  }
  const list = Array.isArray(given) ? given : [];
  const messages = list.map(m => (isObject(m) ? m : { role: '?', content: m }));
  if (typeof request.instructions === 'string') {
    messages.unshift({ role: 'system', content: request.instructions });
  }
  return messages;
}

function replyOf(output: unknown): Record<string, unknown> {
  if (isObject(output) && ('content' in output || 'tool_calls' in output)) {
    return { role: 'assistant', ...output };
  }
  return { role: 'assistant', content: output };
}

function messageNode(message: Record<string, unknown>, way: 'sent' | 'received'): HTMLElement {
  const node = el('div', `nbflow-message nbflow-message-${way}`);
  const role = String(message.role ?? message.type ?? '?');
  node.dataset.role = role;
  node.append(el('div', 'nbflow-message-role', way === 'received' ? `${role} (reply)` : role));
  const content = message.content;
  if (typeof content === 'string') {
    node.append(el('div', 'nbflow-message-text', content));
  } else if (content !== null && content !== undefined) {
    node.append(json(content));
  }
  const calls = message.tool_calls;
  for (const call of Array.isArray(calls) ? calls : []) {
    const fn = isObject(call) && isObject(call.function) ? call.function : call;
    const name = isObject(fn) ? String(fn.name ?? '?') : String(fn);
    const args = isObject(fn) ? fn.arguments : undefined;
    const box = el('div', 'nbflow-tool-call');
    box.append(el('span', 'nbflow-tool-name', `→ tool call ${name}`), el('code', '', typeof args === 'string' ? args : JSON.stringify(args ?? {})));
    node.append(box);
  }
  if (message.tool_call_id) {
    node.append(el('div', 'nbflow-muted', `answers tool call ${message.tool_call_id}`));
  }
  return node;
}

/** Every failed attempt: its error and traceback, and how long the retry waited. */
function attempts(span: Span): HTMLElement[] {
  const failures: Retry[] = [...span.retries];
  if (span.status === 'error' && (span.error || span.traceback)) {
    failures.push({ attempt: span.attempts, error: span.error, error_type: span.error_type, traceback: span.traceback, delay_s: null, ts: span.end });
  }
  if (!failures.length) {
    return [];
  }
  const box = section(failures.length > 1 ? 'Attempts' : 'Error', 'attempts');
  for (const failure of failures) {
    const item = el('div', 'nbflow-attempt');
    item.dataset.attempt = String(failure.attempt);
    const what = failure.error ?? failure.error_type ?? ''; // the error line names its type already
    const wait = typeof failure.delay_s === 'number' ? ` — retried after ${formatDuration(failure.delay_s)}` : '';
    item.append(el('div', 'nbflow-attempt-head', `attempt ${failure.attempt}: ${what}${wait}`));
    if (failure.traceback) {
      const more = el('details', 'nbflow-traceback');
      more.append(el('summary', '', 'traceback'), el('pre', '', failure.traceback));
      item.append(more);
    }
    box.append(item);
  }
  return [box];
}

function attributes(attrs: Record<string, unknown>): HTMLElement | null {
  const names = Object.keys(attrs).sort();
  if (!names.length) {
    return null;
  }
  const box = section('Attributes', 'attrs');
  const table = el('table', 'nbflow-attrs');
  for (const name of names) {
    const value = attrs[name];
    const row = el('tr');
    row.append(el('th', '', name), el('td', '', typeof value === 'string' ? value : JSON.stringify(value)));
    table.append(row);
  }
  box.append(table);
  return box;
}

function jsonSection(title: string, name: string, value: unknown): HTMLElement | null {
  if (value === undefined) {
    return null;
  }
  const box = section(title, name);
  box.append(json(value));
  return box;
}

function json(value: unknown): HTMLElement {
  const view = new JsonView();
  view.show(value);
  return view.node;
}

function section(title: string, name: string): HTMLElement {
  const box = el('section', 'nbflow-inspector-section');
  box.dataset.section = name;
  box.append(el('h4', '', title));
  return box;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function formatCost(usd: number): string {
  return `$${usd.toFixed(usd && usd < 0.01 ? 6 : 4)}`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes} m ${Math.round(seconds % 60)} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} m`;
}

function el(tag: string, className = '', text?: string): HTMLElement {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}
