// Every run of the runtime, newest first, refreshed every couple of seconds,
// with filters on status, workflow and free text. Framework-free DOM.
import { RunSummary, RunsClient } from './client';
import { formatDuration } from './trace';
import { describeWait } from './waits';

export const POLL_MS = 2000;
export const NOTEBOOK_CHARS = 36; // a notebook path longer than this is cut in the middle
const STATUSES = ['', 'queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'];

export class RunsView {
  readonly node: HTMLElement;
  runs: RunSummary[] = [];
  private timer = 0;
  private els: Record<string, HTMLElement> = {};
  private problem = '';

  constructor(
    private client: RunsClient,
    private onOpen: (run: RunSummary) => void
  ) {
    this.node = document.createElement('div');
    this.node.className = 'nbflow-runs';
    this.node.innerHTML = `
      <div class="nbflow-runs-title">nbflow runs <span class="nbflow-runs-count" data-el="count"></span>
        <button class="nbflow-runs-waiting" data-el="waiting" type="button" title="show the runs that wait" hidden></button></div>
      <div class="nbflow-filters">
        <select data-el="status" title="status">${STATUSES.map(s => `<option value="${s}">${s || 'any status'}</option>`).join('')}</select>
        <select data-el="workflow" title="workflow"><option value="">any workflow</option></select>
        <input data-el="text" type="search" placeholder="filter: id, workflow, notebook" />
      </div>
      <div class="nbflow-runs-problem" data-el="problem"></div>
      <div class="nbflow-runs-list" data-el="list"></div>`;
    for (const el of Array.from(this.node.querySelectorAll<HTMLElement>('[data-el]'))) {
      this.els[el.dataset.el!] = el;
    }
    for (const name of ['status', 'workflow', 'text']) {
      this.els[name].addEventListener('input', () => this.draw());
    }
    this.els.waiting.addEventListener('click', () => {
      (this.els.status as HTMLSelectElement).value = 'waiting';
      this.draw();
    });
    this.els.list.addEventListener('click', event => {
      const row = (event.target as HTMLElement).closest<HTMLElement>('.nbflow-run-row');
      const run = this.runs.find(r => r.run_id === row?.dataset.run);
      if (run) {
        this.onOpen(run);
      }
    });
  }

  start(): void {
    if (!this.timer) {
      void this.refresh();
      this.timer = window.setInterval(() => void this.refresh(), POLL_MS);
    }
  }

  stop(): void {
    window.clearInterval(this.timer);
    this.timer = 0;
  }

  async refresh(): Promise<void> {
    try {
      this.runs = await this.client.runs();
      this.problem = '';
    } catch (error) {
      this.problem = `cannot list runs: ${error instanceof Error ? error.message : error}`;
    }
    this.draw();
  }

  filtered(): RunSummary[] {
    const status = (this.els.status as HTMLSelectElement).value;
    const workflow = (this.els.workflow as HTMLSelectElement).value;
    const text = (this.els.text as HTMLInputElement).value.trim().toLowerCase();
    return this.runs.filter(
      r =>
        (!status || r.status === status) &&
        (!workflow || r.workflow === workflow) &&
        (!text || `${r.run_id} ${r.workflow} ${r.notebook ?? ''} ${describeWait(r.wait)}`.toLowerCase().includes(text))
    );
  }

  private draw(): void {
    this.drawWorkflows();
    const shown = this.filtered();
    this.els.count.textContent = `${shown.length}/${this.runs.length}`;
    const waiting = this.runs.filter(r => r.status === 'waiting').length;
    this.els.waiting.hidden = waiting === 0;
    this.els.waiting.textContent = `${waiting} waiting`;
    this.els.problem.textContent = this.problem;
    this.els.list.replaceChildren(...shown.map(row));
  }

  private drawWorkflows(): void {
    const select = this.els.workflow as HTMLSelectElement;
    const names = Array.from(new Set(this.runs.map(r => r.workflow))).sort();
    const key = names.join('\n');
    if (select.dataset.key === key) {
      return;
    }
    select.dataset.key = key;
    const chosen = select.value;
    select.replaceChildren(new Option('any workflow', ''), ...names.map(n => new Option(n, n)));
    select.value = names.includes(chosen) ? chosen : '';
  }
}

function row(run: RunSummary): HTMLElement {
  const el = document.createElement('div');
  el.className = 'nbflow-run-row';
  el.dataset.run = run.run_id;
  el.dataset.status = run.status;
  const started = run.started_at ?? run.created_at;
  const when = started ? new Date(started).toLocaleString() : '';
  const tokens = run.usage?.total_tokens ?? 0;
  el.innerHTML = `
    <div class="nbflow-run-line">
      <span class="nbflow-badge nbflow-status-${run.status}"></span>
      <span class="nbflow-run-workflow"></span>
      <span class="nbflow-fill"></span>
      <span class="nbflow-run-duration"></span>
    </div>
    <div class="nbflow-run-line nbflow-run-sub">
      <code></code><span class="nbflow-run-notebook"></span><span class="nbflow-fill"></span>
      <span class="nbflow-run-when"></span><span class="nbflow-run-tokens"></span>
    </div>`;
  const q = (selector: string) => el.querySelector(selector) as HTMLElement;
  q('.nbflow-badge').textContent = run.status;
  q('.nbflow-run-workflow').textContent = run.workflow;
  q('.nbflow-run-duration').textContent = formatDuration(run.duration_s);
  q('code').textContent = run.run_id.slice(0, 12);
  const notebook = q('.nbflow-run-notebook');
  notebook.textContent = shortPath(run.notebook ?? '');
  notebook.title = run.notebook ?? '';
  q('.nbflow-run-when').textContent = when;
  q('.nbflow-run-tokens').textContent = tokens ? `${tokens.toLocaleString()} tok` : '';
  if (run.status === 'waiting' && run.wait) {
    const waits = document.createElement('div');
    waits.className = `nbflow-run-line nbflow-run-wait nbflow-run-wait-${run.wait.kind}`;
    waits.textContent = `waits for ${describeWait(run.wait)}`;
    el.appendChild(waits);
  }
  return el;
}

/**
 * A path cut in the middle to at most ``max`` characters: its file name whole (or
 * its end, if the name alone is too long), its first folder, then as many of the
 * folders nearest the file as fit: ``work/…/agents/blog.ipynb``.
 */
export function shortPath(path: string, max = NOTEBOOK_CHARS): string {
  if (path.length <= max) {
    return path;
  }
  const parts = path.split('/');
  const name = parts.pop() ?? '';
  if (name.length + 2 > max) {
    return '…' + name.slice(name.length - (max - 1));
  }
  const fits = (head: string, tail: string) => head.length + 2 + tail.length <= max;
  const head = parts.length > 1 && fits(parts[0] + '/', name) ? parts.shift() + '/' : '';
  let tail = name;
  while (parts.length && fits(head, parts[parts.length - 1] + '/' + tail)) {
    tail = parts.pop() + '/' + tail;
  }
  return `${head}…/${tail}`;
}
