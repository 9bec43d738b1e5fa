// One run's trace: header (status, duration, tokens, cost, cancel), progress
// steps with their details, errors, published states (nf.publish) as collapsible
// JSON, the span tree with its timeline and a span inspector, and the streamed output.
// Framework-free DOM, shared by every view of a run: the JupyterLab panel and
// notebook renderer, /ui, and the notebook widget.
//
// Events fold as they arrive; drawing happens at most once per animation frame,
// and the span tree draws only the rows in view, so a 10,000-span run or a run
// emitting hundreds of events a second keeps the page responsive.
import { ApiError, RunSource } from './client';
import { Child, RunEvent, RunState, Step } from './fold';
import { InputForm } from './form';
import { formatCost, formatDuration, SpanInspector } from './inspector';
import { JsonView } from './jsonview';
import { SpanList } from './spanlist';
import { describeWait } from './waits';

export { formatDuration } from './inspector';

const SHOWN_STEPS = 12; // progress chips: the latest ones, the others counted

export interface TraceOptions {
  compact?: boolean; // a notebook output: the span list grows with the run, up to a height
  openRun?: (runId: string) => void; // where a click on a child run takes you
}

export class TraceView {
  readonly node: HTMLElement;
  state: RunState;
  private client: RunSource | null;
  private spans: SpanList;
  private inspector: SpanInspector;
  private frame = 0;
  private abort = new AbortController();
  private live = false;
  private replaced = false;
  private notice = '';
  private els: Record<string, HTMLElement> = {};
  private followOutput = true;
  private ticker = 0;
  private form: InputForm | null = null;
  private openRun: ((runId: string) => void) | null;
  private states = new Map<string, StateBox>(); // by name; kept across redraws and replays
  private statesDrawn: [RunState | null, number] = [null, -1];

  constructor(state: RunState, client: RunSource | null, options: TraceOptions = {}) {
    this.state = state;
    this.client = client;
    this.openRun = options.openRun ?? null;
    this.spans = new SpanList(Boolean(options.compact), () => this.schedule());
    this.inspector = new SpanInspector(() => {
      this.spans.selected = null;
      this.schedule();
    });
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
        <span class="nbflow-restarts" data-el="restarts"></span>
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
      <div class="nbflow-body" data-el="body"></div>
      <pre class="nbflow-output" data-el="output"></pre>`;
    for (const el of Array.from(this.node.querySelectorAll<HTMLElement>('[data-el]'))) {
      this.els[el.dataset.el!] = el;
    }
    this.els.body.append(this.spans.node, this.inspector.node);
    const out = this.els.output;
    out.addEventListener('scroll', () => {
      this.followOutput = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    });
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
      await this.client?.cancel?.(this.state.runId);
    } catch (error) {
      this.notice = `cancel failed: ${error}`;
      button.disabled = false;
    }
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
    node.dataset.restarts = String(s.restarts);
    setText(this.els.status, s.status);
    this.els.status.className = `nbflow-badge nbflow-status-${s.status}`;
    setText(this.els.workflow, s.workflow);
    setText(this.els.runid, s.runId);
    setText(this.els.live, this.live ? (s.done ? 'replayed' : 'live') : '');
    // A run whose worker was lost goes back to the queue and is picked up again.
    setText(this.els.restarts, s.restarts ? `restarted ×${s.restarts}${s.reason ? ` (${s.reason})` : ''}` : '');
    setText(this.els.duration, formatDuration(runSeconds(s)));
    setText(this.els.tokens, `${usage.total_tokens.toLocaleString()} tokens (${usage.input_tokens} in / ${usage.output_tokens} out)`);
    setText(this.els.cost, formatCost(usage.cost_usd));
    this.els.cancel.hidden = s.done || !this.client?.cancel;
    this.renderSteps();
    this.renderWait();
    setText(this.els.notice, this.notice);
    const error = s.error ? `${s.error}${s.traceback ? '\n\n' + s.traceback : ''}` : ''; // the error line names its type
    setText(this.els.error, error);
    this.els.error.hidden = !error;
    this.renderChildren();
    this.renderStates();
    this.spans.draw(s, this.live);
    this.inspector.show(s, this.spans.selected);
    node.dataset.selected = this.spans.selected ?? '';
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
      this.form = new InputForm(wait, async (name, value) => {
        await client.sendInput(s.runId, name, value);
      });
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

  /** Progress steps as chips: name, state and detail (nf.progress(step, detail)); the latest
   *  ones, the earlier ones counted. */
  private renderSteps(): void {
    const steps = Array.from(this.state.steps.values());
    const key = JSON.stringify(steps.map(st => [st.name, st.state, st.detail]));
    if (this.els.steps.dataset.key === key) {
      return;
    }
    this.els.steps.dataset.key = key;
    const chip = (step: Step) => {
      const el = textNode('span', `nbflow-step nbflow-step-${step.state}`, `${step.name}: ${step.state}`);
      el.dataset.step = step.name;
      if (step.detail !== null && step.detail !== undefined && step.detail !== '') {
        el.append(textNode('span', 'nbflow-step-detail', ` · ${typeof step.detail === 'string' ? step.detail : JSON.stringify(step.detail)}`));
      }
      return el;
    };
    const earlier = steps.length - SHOWN_STEPS;
    this.els.steps.replaceChildren(
      ...(earlier > 0 ? [textNode('span', 'nbflow-step nbflow-step-earlier', `${earlier} earlier steps`)] : []),
      ...steps.slice(Math.max(earlier, 0)).map(chip)
    );
  }

  private renderOutput(): void {
    const out = this.els.output;
    out.hidden = !this.state.emitted;
    if (out.textContent !== this.state.emitted) {
      out.textContent = this.state.emitted;
      if (this.followOutput) {
        out.scrollTop = out.scrollHeight;
      }
    }
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

function runSeconds(s: RunState): number | null {
  if (s.startedAt === null) {
    return null;
  }
  return (s.endedAt ?? (s.done ? s.startedAt : Date.now() / 1000)) - s.startedAt;
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
