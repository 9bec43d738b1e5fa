// A collapsible view of one JSON value (a run's published state): objects and arrays
// open to OPEN_DEPTH and collapse below it, keys in the order they were sent, long
// strings cut with a button that shows the rest. What a person opened, closed or
// expanded is kept by path, so the view redraws as patches arrive without losing it.
// A "JSON" button shows the value as indented JSON text instead, to read or copy.
// Framework-free DOM; collapsed parts are not drawn at all.

export const OPEN_DEPTH = 2; // levels open at first: the root and its children
export const MAX_STRING_CHARS = 160; // a longer string shows this much until expanded
const MAX_CHILDREN = 500; // an object or array shows this many entries, then a count

export class JsonView {
  readonly node: HTMLElement;
  private value: unknown = null;
  private opened = new Set<string>(); // below OPEN_DEPTH, opened by a click
  private closed = new Set<string>(); // up to OPEN_DEPTH, closed by a click
  private whole = new Set<string>(); // long strings shown in full
  private raw = false;

  constructor() {
    this.node = document.createElement('div');
    this.node.className = 'nbflow-json';
    this.node.addEventListener('click', event => this.click(event));
  }

  /** Draw ``value`` (again), keeping what was opened, closed and expanded. */
  show(value: unknown): void {
    this.value = value;
    this.draw();
  }

  /** Indented JSON text instead of the tree, or the tree again. */
  setRaw(raw: boolean): void {
    this.raw = raw;
    this.draw();
  }

  get isRaw(): boolean {
    return this.raw;
  }

  private draw(): void {
    if (this.raw) {
      this.node.replaceChildren(el('pre', 'nbflow-json-raw', JSON.stringify(this.value, null, 2)));
      return;
    }
    this.node.replaceChildren(this.item(this.value, '', 0));
  }

  private isOpen(path: string, depth: number): boolean {
    return depth < OPEN_DEPTH ? !this.closed.has(path) : this.opened.has(path);
  }

  private click(event: Event): void {
    // only the toggles, braces, summaries and "more" buttons carry a path
    const target = (event.target as HTMLElement).closest<HTMLElement>('[data-path]');
    if (!target || !this.node.contains(target)) {
      return;
    }
    const path = target.dataset.path!;
    if (target.classList.contains('nbflow-json-more')) {
      this.whole.add(path);
    } else {
      toggle(Number(target.dataset.depth) < OPEN_DEPTH ? this.closed : this.opened, path);
    }
    this.draw();
  }

  private item(value: unknown, path: string, depth: number): HTMLElement {
    if (value === null || typeof value !== 'object') {
      return this.scalar(value, path);
    }
    const isArray = Array.isArray(value);
    const entries: [string, unknown][] = isArray ? value.map((v, i) => [String(i), v]) : Object.entries(value as object);
    const box = el('span', `nbflow-json-node nbflow-json-${isArray ? 'array' : 'object'}`, '');
    box.dataset.pointer = path;
    const clickable = (className: string, text: string) => {
      const part = el('span', className, text);
      part.dataset.path = path;
      part.dataset.depth = String(depth);
      return part;
    };
    const open = this.isOpen(path, depth) && entries.length > 0;
    box.dataset.open = open ? '1' : '0';
    const [left, right] = isArray ? ['[', ']'] : ['{', '}'];
    const count = `${entries.length} ${isArray ? 'item' : 'key'}${entries.length === 1 ? '' : 's'}`;
    if (!open) {
      const summary = entries.length ? `${left} … ${right} ${count}` : `${left}${right}`;
      box.append(clickable('nbflow-json-toggle', entries.length ? '▸' : ''), clickable('nbflow-json-summary', summary));
      return box;
    }
    box.append(clickable('nbflow-json-toggle', '▾'), clickable('nbflow-json-brace', left));
    const list = el('div', 'nbflow-json-children', '');
    for (const [key, child] of entries.slice(0, MAX_CHILDREN)) {
      const row = el('div', 'nbflow-json-row', '');
      row.append(
        el('span', isArray ? 'nbflow-json-index' : 'nbflow-json-key', isArray ? key : JSON.stringify(key)),
        el('span', 'nbflow-json-colon', ': '),
        this.item(child, `${path}/${escapeKey(key)}`, depth + 1)
      );
      list.append(row);
    }
    if (entries.length > MAX_CHILDREN) {
      list.append(el('div', 'nbflow-json-row nbflow-json-rest', `… ${entries.length - MAX_CHILDREN} more (see JSON)`));
    }
    box.append(list, el('span', 'nbflow-json-brace', right));
    return box;
  }

  private scalar(value: unknown, path: string): HTMLElement {
    if (typeof value !== 'string') {
      const kind = value === null ? 'null' : typeof value;
      return el('span', `nbflow-json-${kind}`, JSON.stringify(value) ?? 'null');
    }
    const text = JSON.stringify(value);
    if (value.length <= MAX_STRING_CHARS || this.whole.has(path)) {
      return el('span', 'nbflow-json-string', text);
    }
    const box = el('span', 'nbflow-json-string nbflow-json-cut', JSON.stringify(value.slice(0, MAX_STRING_CHARS)).slice(0, -1) + '…"');
    const more = el('button', 'nbflow-json-more', `+${(value.length - MAX_STRING_CHARS).toLocaleString()} chars`) as HTMLButtonElement;
    more.type = 'button';
    more.dataset.path = path;
    more.title = 'show the whole string';
    const wrap = el('span', '', '');
    wrap.append(box, more);
    return wrap;
  }
}

function toggle(set: Set<string>, path: string): void {
  if (!set.delete(path)) {
    set.add(path);
  }
}

/** A key as it appears in a JSON pointer (RFC 6901): ~ as ~0, / as ~1. */
export function escapeKey(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function el(tag: string, className: string, text: string): HTMLElement {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  node.textContent = text;
  return node;
}
