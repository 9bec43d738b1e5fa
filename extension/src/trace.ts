// One run's trace: header (status, duration, tokens, cost, cancel), progress
// steps, errors, published states (nf.publish) as collapsible JSON, a span tree
// with its timeline, and the streamed output.
// Framework-free DOM, shared by the JupyterLab panel, the notebook renderer and /ui.
//
// Events fold as they arrive; drawing happens at most once per animation frame,
// and the span tree draws only the rows in view, so a 10,000-span run or a run
// emitting hundreds of events a second keeps the page responsive.
import { ApiError, RunsClient } from './client';
import { Child, RunEvent, RunState, Span } from './fold';
import { InputForm } from './form';
import { JsonView } from './jsonview';
import { describeWait } from './waits';

export const ROW_PX = 22;
const OVERSCAN_ROWS = 10;
const SHOWN_STEPS = 12; // progress chips: the latest ones, the others counted

export interface TraceOptions {
  compact?: boolean; // a notebook output: a shorter span list
  openRun?: (runId: string) => void; // where a click on a child run takes you
}

export class TraceView {
  readonly node: HTMLElement;
  state: RunState;
  private client: RunsClient | null;
  private collapsed = new Set<string>();
  private rows: Span[] = [];
  private rowsStructure = -1;
  private frame = 0;
  private abort = new AbortController();
  private live = false;
  private replaced = false;
  private notice = '';
  private els: Record<string, HTMLElement> = {};
  private pool: HTMLElement[] = [];
  private followOutput = true;
  private ticker = 0;
  private form: InputForm | null = null;
  private openRun: ((runId: string) => void) | null;
  private states = new Map<string, StateBox>(); // by name; kept across redraws and replays
  private statesDrawn: [RunState | null, number] = [null, -1];

  constructor(state: RunState, client: RunsClient | null, options: TraceOptions = {}) {
    this.state = state;
    this.client = client;
    this.openRun = options.openRun ?? null;
    this.node = document.createElement('div');
    this.node.className = 'nbflow-trace' + (options.compact ? ' nbflow-compact' : '');
    this.build();
    this.schedule();
  }

  /** Replay the run's log from its start, then follow it live until it ends. */
  connect(): void {
    const client = this.client;
    if (!client) {
      return;
    }
    this.live = true;
    this.schedule();
    // Durations and running bars grow with time, not only with events.
    this.ticker = window.setInterval(() => this.state.done || this.schedule(), 1000);
    client
      .follow(this.state.runId, '0', events => this.receive(events), this.abort.signal)
      .catch(error => {
        this.notice = error instanceof ApiError && error.status === 404 ? 'run not found on this runtime (expired?)' : String(error);
      })
      .finally(() => {
        this.live = false;
        window.clearInterval(this.ticker);
        this.schedule();
      });
  }

  receive(events: RunEvent[]): void {
    if (!this.replaced) {
      // The replay from the first event supersedes any snapshot we drew meanwhile.
      this.replaced = true;
      this.state = new RunState(this.state.runId);
      this.rowsStructure = -1;
    }
    for (const event of events) {
      this.state.apply(event);
    }
    this.schedule();
  }

  dispose(): void {
    this.abort.abort();
    window.clearInterval(this.ticker);
    cancelAnimationFrame(this.frame);
  }

  schedule(): void {
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.render();
      });
    }
  }

  private build(): void {
    this.node.innerHTML = `
      <div class="nbflow-head">
        <span class="nbflow-badge" data-el="status"></span>
        <span class="nbflow-workflow" data-el="workflow"></span>
        <code class="nbflow-runid" data-el="runid"></code>
        <span class="nbflow-live" data-el="live"></span>
        <span class="nbflow-fill"></span>
        <span class="nbflow-metric" data-el="duration"></span>
        <span class="nbflow-metric" data-el="tokens"></span>
        <span class="nbflow-metric" data-el="cost"></span>
        <button class="nbflow-cancel" data-el="cancel" type="button">Cancel</button>
      </div>
      <div class="nbflow-steps" data-el="steps"></div>
      <div class="nbflow-wait" data-el="wait"></div>
      <div class="nbflow-notice" data-el="notice"></div>
      <pre class="nbflow-error" data-el="error"></pre>
      <div class="nbflow-children" data-el="children"></div>
      <div class="nbflow-states" data-el="states"></div>
      <div class="nbflow-span-head">
        <span class="nbflow-col-name">Span</span><span class="nbflow-col-dur">Duration</span>
        <span class="nbflow-col-tok">Tokens</span><span class="nbflow-col-time">Timeline</span>
      </div>
      <div class="nbflow-scroll" data-el="scroll"><div class="nbflow-spacer" data-el="spacer"></div></div>
      <pre class="nbflow-output" data-el="output"></pre>`;
    for (const el of Array.from(this.node.querySelectorAll<HTMLElement>('[data-el]'))) {
      this.els[el.dataset.el!] = el;
    }
    this.els.scroll.addEventListener('scroll', () => this.schedule(), { passive: true });
    const out = this.els.output;
    out.addEventListener('scroll', () => {
      this.followOutput = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    });
    this.els.spacer.addEventListener('click', event => this.toggle(event));
    this.els.cancel.addEventListener('click', () => this.cancel());
    this.els.children.addEventListener('click', event => {
      const row = (event.target as HTMLElement).closest<HTMLElement>('.nbflow-child');
      if (row?.dataset.child && this.openRun) {
        this.openRun(row.dataset.child);
      }
    });
  }

  private async cancel(): Promise<void> {
    const button = this.els.cancel as HTMLButtonElement;
    button.disabled = true;
    try {
      await this.client?.cancel(this.state.runId);
    } catch (error) {
      this.notice = `cancel failed: ${error}`;
      button.disabled = false;
    }
    this.schedule();
  }

  private toggle(event: Event): void {
    const row = (event.target as HTMLElement).closest<HTMLElement>('.nbflow-span-row');
    const id = row?.dataset.span;
    if (!id || !(event.target as HTMLElement).classList.contains('nbflow-toggle')) {
      return;
    }
    if (!this.collapsed.delete(id)) {
      this.collapsed.add(id);
    }
    this.rowsStructure = -1;
    this.schedule();
  }

  private render(): void {
    const s = this.state;
    const usage = s.usage();
    const node = this.node;
    node.dataset.run = s.runId;
    node.dataset.status = s.status;
    node.dataset.spans = String(s.spans.size);
    node.dataset.events = String(s.count);
    node.dataset.live = this.live ? '1' : '0';
    setText(this.els.status, s.status);
    this.els.status.className = `nbflow-badge nbflow-status-${s.status}`;
    setText(this.els.workflow, s.workflow);
    setText(this.els.runid, s.runId);
    setText(this.els.live, this.live ? (s.done ? 'replayed' : 'live') : '');
    setText(this.els.duration, formatDuration(runSeconds(s)));
    setText(this.els.tokens, `${usage.total_tokens.toLocaleString()} tokens (${usage.input_tokens} in / ${usage.output_tokens} out)`);
    setText(this.els.cost, `$${usage.cost_usd.toFixed(4)}`);
    this.els.cancel.hidden = s.done || !this.client;
    this.renderSteps();
    this.renderWait();
    setText(this.els.notice, this.notice);
    const error = s.error ? `${s.error}${s.traceback ? '\n\n' + s.traceback : ''}` : ''; // the error line names its type
    setText(this.els.error, error);
    this.els.error.hidden = !error;
    this.renderChildren();
    this.renderStates();
    this.renderRows();
    this.renderOutput();
  }

  /** While the run waits: what for, and for input the form that answers it (kept while
   *  the same wait lasts, so that what a person types is not redrawn away). */
  private renderWait(): void {
    const s = this.state;
    const wait = s.status === 'waiting' ? s.wait : null;
    const key = wait ? JSON.stringify(wait) : '';
    const box = this.els.wait;
    if (box.dataset.key === key) {
      return;
    }
    box.dataset.key = key;
    this.form = null;
    box.dataset.kind = wait?.kind ?? '';
    if (!wait) {
      box.replaceChildren();
      return;
    }
    const client = this.client;
    if (wait.kind === 'input' && client) {
      this.form = new InputForm(wait, (name, value) => client.sendInput(s.runId, name, value));
      box.replaceChildren(this.form.node);
      return;
    }
    box.replaceChildren(textNode('div', 'nbflow-wait-what', `waiting for ${describeWait(wait)}`));
  }

  private renderChildren(): void {
    const children = Array.from(this.state.children.values());
    const key = JSON.stringify(children);
    const box = this.els.children;
    if (box.dataset.key === key) {
      return;
    }
    box.dataset.key = key;
    if (!children.length) {
      box.replaceChildren();
      return;
    }
    const ended = children.filter(c => c.status !== 'running').length;
    const tokens = children.reduce((sum, c) => sum + c.total_tokens, 0);
    const cost = children.reduce((sum, c) => sum + c.cost_usd, 0);
    const totals = tokens || cost ? ` · ${tokens.toLocaleString()} tokens · $${cost.toFixed(4)}` : '';
    const head = textNode('div', 'nbflow-children-head', `Child runs: ${children.length} (${ended} ended)${totals}`);
    box.replaceChildren(head, ...children.map(c => childRow(c, this.openRun !== null)));
  }

  /** Each published state as a JSON tree, redrawn when a patch changed one. */
  private renderStates(): void {
    const s = this.state;
    if (this.statesDrawn[0] === s && this.statesDrawn[1] === s.publishedVersion) {
      return;
    }
    this.statesDrawn = [s, s.publishedVersion];
    const shown: HTMLElement[] = [];
    for (const [name, value] of s.published) {
      let box = this.states.get(name);
      if (!box) {
        box = new StateBox(name);
        this.states.set(name, box);
      }
      box.show(value, s.publishErrors.get(name) ?? '', s.publishedVersion);
      shown.push(box.node);
    }
    const list = this.els.states;
    if (shown.length !== list.children.length || shown.some((node, i) => list.children[i] !== node)) {
      list.replaceChildren(...shown);
    }
  }

  private renderSteps(): void {
    const key = Array.from(this.state.progress, ([k, v]) => `${k}=${v}`).join('|');
    if (this.els.steps.dataset.key === key) {
      return;
    }
    this.els.steps.dataset.key = key;
    const steps = Array.from(this.state.progress);
    const chip = (text: string, state: string) => {
      const el = document.createElement('span');
      el.className = `nbflow-step nbflow-step-${state}`;
      el.textContent = text;
      return el;
    };
    const earlier = steps.length - SHOWN_STEPS;
    this.els.steps.replaceChildren(
      ...(earlier > 0 ? [chip(`${earlier} earlier steps`, 'earlier')] : []),
      ...steps.slice(Math.max(earlier, 0)).map(([step, state]) => chip(`${step}: ${state}`, state))
    );
  }

  private renderOutput(): void {
    const out = this.els.output;
    out.hidden = !this.state.output;
    if (out.textContent !== this.state.output) {
      out.textContent = this.state.output;
      if (this.followOutput) {
        out.scrollTop = out.scrollHeight;
      }
    }
  }

  private renderRows(): void {
    const s = this.state;
    if (this.rowsStructure !== s.structure) {
      this.rows = s.rows(this.collapsed);
      this.rowsStructure = s.structure;
      this.els.spacer.style.height = `${this.rows.length * ROW_PX}px`;
    }
    const scroll = this.els.scroll;
    const first = Math.max(0, Math.floor(scroll.scrollTop / ROW_PX) - OVERSCAN_ROWS);
    const visible = Math.ceil((scroll.clientHeight || 400) / ROW_PX) + 2 * OVERSCAN_ROWS;
    const last = Math.min(this.rows.length, first + visible);
    const scale = timeScale(s);
    while (this.pool.length < last - first) {
      const row = document.createElement('div');
      row.className = 'nbflow-span-row';
      row.innerHTML =
        '<span class="nbflow-col-name"><span class="nbflow-toggle"></span><span class="nbflow-kind"></span><span class="nbflow-name"></span></span>' +
        '<span class="nbflow-col-dur"></span><span class="nbflow-col-tok"></span>' +
        '<span class="nbflow-col-time"><span class="nbflow-bar"></span></span>';
      this.els.spacer.appendChild(row);
      this.pool.push(row);
    }
    this.pool.forEach((row, n) => {
      const span = this.rows[first + n];
      row.hidden = span === undefined;
      if (span) {
        this.drawRow(row, span, first + n, scale);
      }
    });
  }

  private drawRow(row: HTMLElement, span: Span, index: number, scale: Scale): void {
    row.style.top = `${index * ROW_PX}px`;
    row.dataset.span = span.span_id;
    row.className = `nbflow-span-row nbflow-span-${span.status}`;
    row.title = span.error ? `${span.name}: ${span.error}` : span.name;
    const [nameCell, durCell, tokCell, timeCell] = Array.from(row.children) as HTMLElement[];
    nameCell.style.paddingLeft = `${4 + span.depth * 14}px`;
    const [toggle, kind, name] = Array.from(nameCell.children) as HTMLElement[];
    setText(toggle, span.children.length ? (this.collapsed.has(span.span_id) ? '▸' : '▾') : '');
    setText(kind, span.kind);
    kind.className = `nbflow-kind nbflow-kind-${span.kind}`;
    const extra = (span.cached ? ' (cached)' : '') + (span.attempts > 1 ? ` ×${span.attempts}` : '');
    setText(name, span.name + extra + (span.error ? ` — ${span.error}` : ''));
    setText(durCell, formatDuration(span.duration_ms === null ? null : span.duration_ms / 1000));
    setText(tokCell, span.tokens ? span.tokens.toLocaleString() : '');
    const bar = timeCell.firstElementChild as HTMLElement;
    const [left, width] = scale(span);
    bar.hidden = left === null;
    bar.style.left = `${left ?? 0}%`;
    bar.style.width = `${width}%`;
    bar.className = `nbflow-bar nbflow-bar-${span.status}`;
  }
}

/** One published state: its name, size, a JSON/tree switch, and the tree. */
class StateBox {
  readonly node: HTMLElement;
  private json = new JsonView();
  private size: HTMLElement;
  private error: HTMLElement;

  constructor(name: string) {
    this.node = textNode('div', 'nbflow-state', '');
    this.node.dataset.name = name;
    const head = textNode('div', 'nbflow-state-head', '');
    this.size = textNode('span', 'nbflow-metric nbflow-state-size', '');
    const raw = textNode('button', 'nbflow-state-raw', 'JSON') as HTMLButtonElement;
    raw.type = 'button';
    raw.title = 'show the value as JSON text, or as a tree again';
    raw.addEventListener('click', () => {
      this.json.setRaw(!this.json.isRaw);
      raw.textContent = this.json.isRaw ? 'tree' : 'JSON';
    });
    head.append(
      textNode('span', 'nbflow-state-label', 'state'),
      textNode('code', 'nbflow-state-name', name),
      textNode('span', 'nbflow-fill', ''),
      this.size,
      raw
    );
    this.error = textNode('div', 'nbflow-state-error', '');
    this.node.append(head, this.error, this.json.node);
  }

  show(value: unknown, error: string, version: number): void {
    this.node.dataset.version = String(version);
    setText(this.size, formatBytes(new TextEncoder().encode(JSON.stringify(value) ?? 'null').length));
    setText(this.error, error ? `a patch did not apply (the value shown is the last good one): ${error}` : '');
    this.error.hidden = !error;
    this.json.show(value);
  }
}

function formatBytes(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KB`;
}

type Scale = (span: Span) => [number | null, number];

function timeScale(s: RunState): Scale {
  let t0 = s.startedAt ?? Infinity;
  let t1 = s.endedAt ?? -Infinity;
  const now = Date.now() / 1000;
  for (const span of s.spans.values()) {
    if (span.start !== null) {
      t0 = Math.min(t0, span.start);
      t1 = Math.max(t1, span.end ?? (s.done ? span.start : now));
    }
  }
  if (!isFinite(t0)) {
    return () => [null, 0];
  }
  const total = Math.max(t1 - t0, 1e-3);
  return span => {
    if (span.start === null) {
      return [null, 0];
    }
    const end = span.end ?? (s.done ? span.start : now);
    const left = ((span.start - t0) / total) * 100;
    return [left, Math.max(((end - span.start) / total) * 100, 0.3)];
  };
}

function runSeconds(s: RunState): number | null {
  if (s.startedAt === null) {
    return null;
  }
  return (s.endedAt ?? (s.done ? s.startedAt : Date.now() / 1000)) - s.startedAt;
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

function childRow(child: Child, clickable: boolean): HTMLElement {
  const row = document.createElement('div');
  row.className = 'nbflow-child' + (clickable ? ' nbflow-clickable' : '');
  row.dataset.child = child.child_id;
  row.dataset.status = child.status;
  row.append(
    textNode('span', `nbflow-badge nbflow-status-${child.status}`, child.status),
    textNode('span', 'nbflow-child-workflow', child.workflow ?? ''),
    textNode('code', 'nbflow-child-id', child.child_id),
    textNode('span', 'nbflow-fill', ''),
    textNode('span', 'nbflow-metric', child.total_tokens ? `${child.total_tokens.toLocaleString()} tokens` : ''),
    textNode('span', 'nbflow-metric', child.cost_usd ? `$${child.cost_usd.toFixed(4)}` : '')
  );
  return row;
}

function textNode(tag: string, className: string, text: string): HTMLElement {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) {
    el.textContent = text;
  }
}
