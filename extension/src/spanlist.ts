// A run's spans as a tree with a timeline on the same rows: search and filters (name,
// kind, status), collapsible subtrees, a selected span, and while the run is live the
// list follows the newest rows (until the reader scrolls up; back at the bottom, it
// follows again). Only the rows in view are drawn, so 10,000 spans stay cheap.
import { RunState, Span } from './fold';
import { formatCost, formatDuration } from './inspector';

export const ROW_PX = 22;
const OVERSCAN_ROWS = 10;
const COMPACT_ROWS = 16; // a notebook output grows up to this many rows, then scrolls
const KINDS = ['', 'workflow', 'component', 'llm'];
const STATUSES = ['', 'running', 'ok', 'error', 'cancelled'];

export interface SpanFilter {
  text: string;
  kind: string;
  status: string;
}

export class SpanList {
  readonly node: HTMLElement;
  selected: string | null = null;
  private filter: SpanFilter = { text: '', kind: '', status: '' };
  private collapsed = new Set<string>();
  private rows: Span[] = [];
  private rowsKey = '';
  private pool: HTMLElement[] = [];
  private follow = true;
  private els: Record<string, HTMLElement> = {};

  constructor(
    private compact: boolean,
    private changed: () => void
  ) {
    this.node = document.createElement('div');
    this.node.className = 'nbflow-spans';
    this.node.innerHTML = `
      <div class="nbflow-span-tools">
        <input class="nbflow-span-search" data-el="search" type="search" placeholder="find spans by name" aria-label="find spans">
        <select data-el="kind" title="kind" aria-label="kind">${options(KINDS, 'any kind')}</select>
        <select data-el="status" title="status" aria-label="status">${options(STATUSES, 'any status')}</select>
        <span class="nbflow-metric nbflow-span-count" data-el="count"></span>
      </div>
      <div class="nbflow-span-head">
        <span class="nbflow-col-name">Span</span><span class="nbflow-col-dur">Duration</span>
        <span class="nbflow-col-tok">Tokens</span><span class="nbflow-col-cost">Cost</span>
        <span class="nbflow-col-time" data-el="axis">Timeline</span>
      </div>
      <div class="nbflow-scroll" data-el="scroll"><div class="nbflow-spacer" data-el="spacer"></div></div>`;
    for (const el of Array.from(this.node.querySelectorAll<HTMLElement>('[data-el]'))) {
      this.els[el.dataset.el!] = el;
    }
    // JupyterLab's notebook shortcuts must not take the keys typed in the search box.
    this.node.setAttribute('data-lm-suppress-shortcuts', '');
    const scroll = this.els.scroll;
    scroll.addEventListener(
      'scroll',
      () => {
        this.follow = scroll.scrollTop + scroll.clientHeight >= scroll.scrollHeight - ROW_PX / 2;
        this.changed();
      },
      { passive: true }
    );
    this.els.spacer.addEventListener('click', event => this.click(event));
    const refilter = () => {
      const value = (name: string) => (this.els[name] as HTMLInputElement).value;
      this.filter = { text: value('search').trim().toLowerCase(), kind: value('kind'), status: value('status') };
      this.rowsKey = '';
      this.els.scroll.scrollTop = 0;
      this.changed();
    };
    for (const name of ['search', 'kind', 'status']) {
      this.els[name].addEventListener('input', refilter);
    }
  }

  draw(state: RunState, live: boolean): void {
    const grew = this.updateRows(state);
    const scroll = this.els.scroll;
    if (this.compact) {
      scroll.style.height = `${Math.max(1, Math.min(this.rows.length, COMPACT_ROWS)) * ROW_PX}px`;
    }
    if (grew && live && this.follow) {
      scroll.scrollTop = scroll.scrollHeight;
    }
    const shown = this.rows.length;
    const total = state.spans.size;
    setText(this.els.count, shown === total ? `${total.toLocaleString()} spans` : `${shown.toLocaleString()} of ${total.toLocaleString()} spans`);
    const scale = timeScale(state);
    setText(this.els.axis, scale.total ? `Timeline (${formatDuration(scale.total)})` : 'Timeline');
    this.drawRows(scale);
  }

  /** The rows in order, recomputed when the tree, the filter or (filtering by status) a
   *  span's status may have changed; true when rows were added. */
  private updateRows(state: RunState): boolean {
    const f = this.filter;
    const key = `${state.runId}|${state.structure}|${f.status ? state.count : ''}|${f.text}|${f.kind}|${f.status}`;
    if (key === this.rowsKey) {
      return false;
    }
    const before = this.rows.length;
    this.rowsKey = key;
    this.rows = f.text || f.kind || f.status ? matching(state, f) : state.rows(this.collapsed);
    this.els.spacer.style.height = `${this.rows.length * ROW_PX}px`;
    return this.rows.length > before;
  }

  private click(event: Event): void {
    const target = event.target as HTMLElement;
    const row = target.closest<HTMLElement>('.nbflow-span-row');
    const id = row?.dataset.span;
    if (!id) {
      return;
    }
    if (target.classList.contains('nbflow-toggle')) {
      if (!this.collapsed.delete(id)) {
        this.collapsed.add(id);
      }
      this.rowsKey = '';
    } else {
      this.selected = this.selected === id ? null : id;
    }
    this.changed();
  }

  private drawRows(scale: Scale): void {
    const scroll = this.els.scroll;
    const visible = Math.ceil((scroll.clientHeight || 400) / ROW_PX) + 2 * OVERSCAN_ROWS;
    // A scroll position left from a longer list (the browser clamps it after layout).
    const first = Math.max(0, Math.min(Math.floor(scroll.scrollTop / ROW_PX) - OVERSCAN_ROWS, this.rows.length - visible));
    const last = Math.min(this.rows.length, first + visible);
    while (this.pool.length < last - first) {
      this.pool.push(this.newRow());
    }
    this.pool.forEach((row, n) => {
      const span = this.rows[first + n];
      row.hidden = span === undefined || first + n >= last;
      if (!row.hidden) {
        this.drawRow(row, span, first + n, scale);
      }
    });
  }

  private newRow(): HTMLElement {
    const row = document.createElement('div');
    row.className = 'nbflow-span-row';
    row.innerHTML =
      '<span class="nbflow-col-name"><span class="nbflow-toggle"></span><span class="nbflow-kind"></span><span class="nbflow-name"></span></span>' +
      '<span class="nbflow-col-dur"></span><span class="nbflow-col-tok"></span><span class="nbflow-col-cost"></span>' +
      '<span class="nbflow-col-time"><span class="nbflow-bar"></span></span>';
    this.els.spacer.appendChild(row);
    return row;
  }

  private drawRow(row: HTMLElement, span: Span, index: number, scale: Scale): void {
    row.style.top = `${index * ROW_PX}px`;
    row.dataset.span = span.span_id;
    row.className = `nbflow-span-row nbflow-span-${span.status}` + (span.span_id === this.selected ? ' nbflow-selected' : '');
    row.title = span.error ? `${span.name}: ${span.error}` : span.name;
    const [nameCell, durCell, tokCell, costCell, timeCell] = Array.from(row.children) as HTMLElement[];
    nameCell.style.paddingLeft = `${4 + span.depth * 14}px`;
    const [toggle, kind, name] = Array.from(nameCell.children) as HTMLElement[];
    const filtering = Boolean(this.filter.text || this.filter.kind || this.filter.status);
    setText(toggle, span.children.length && !filtering ? (this.collapsed.has(span.span_id) ? '▸' : '▾') : '');
    setText(kind, span.kind);
    kind.className = `nbflow-kind nbflow-kind-${span.kind}`;
    const extra = (span.cached ? ' (cached)' : '') + (span.attempts > 1 ? ` ×${span.attempts}` : '');
    setText(name, span.name + extra + (span.error ? ` — ${span.error}` : ''));
    setText(durCell, formatDuration(span.duration_ms === null ? null : span.duration_ms / 1000));
    const total = span.rollup;
    setText(tokCell, total.tokens ? total.tokens.toLocaleString() : '');
    setText(costCell, total.cost_usd ? formatCost(total.cost_usd) : '');
    const bar = timeCell.firstElementChild as HTMLElement;
    const [left, width] = scale.place(span);
    bar.hidden = left === null;
    bar.style.left = `${left ?? 0}%`;
    bar.style.width = `${width}%`;
    bar.className = `nbflow-bar nbflow-bar-${span.status}`;
  }
}

/** The spans a filter matches, each under its ancestors (shown for context), in tree order. */
function matching(state: RunState, f: SpanFilter): Span[] {
  const keep = new Set<string>();
  for (const span of state.spans.values()) {
    const hit =
      (!f.text || span.name.toLowerCase().includes(f.text)) &&
      (!f.kind || span.kind === f.kind) &&
      (!f.status || span.status === f.status);
    for (let s: Span | undefined = hit ? span : undefined; s && !keep.has(s.span_id); ) {
      keep.add(s.span_id);
      s = s.parent_id ? state.spans.get(s.parent_id) : undefined;
    }
  }
  return state.rows(new Set()).filter(span => keep.has(span.span_id));
}

interface Scale {
  total: number; // seconds from the first start to the last end (or now)
  place: (span: Span) => [number | null, number]; // left and width, in percent
}

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
  if (!isFinite(t0) || !isFinite(t1)) {
    return { total: 0, place: () => [null, 0] };
  }
  const total = Math.max(t1 - t0, 1e-3);
  const place = (span: Span): [number | null, number] => {
    if (span.start === null) {
      return [null, 0];
    }
    const end = span.end ?? (s.done ? span.start : now);
    return [((span.start - t0) / total) * 100, Math.max(((end - span.start) / total) * 100, 0.3)];
  };
  return { total, place };
}

function options(values: string[], any: string): string {
  return values.map(v => `<option value="${v}">${v || any}</option>`).join('');
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) {
    el.textContent = text;
  }
}
