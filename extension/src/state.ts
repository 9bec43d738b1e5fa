// Published states (nf.publish) rebuilt from their state.patch events, and JSON values
// shown as text: the same rules as nbflow/_state.py (apply) and nbflow/_fold.py, so
// the viewer and the Python readers (run.state, GET /runs/{id}/state/{name}) agree.
//
// A patch is RFC 6902 (applied by fast-json-patch) plus one op of nbflow's own:
// {"op": "append", "path": p, "value": s}, the string at p grew by s.
import { Operation, applyOperation, deepClone, unescapePathComponent } from 'fast-json-patch';

export const APPEND = 'append';

export type StateOp = { op: string; path: string; value?: unknown; from?: string };

/** ``doc`` with ``patch`` applied, as a new value (``doc`` and the patch are not changed).
 *  A patch that does not apply throws, saying which op and why. */
export function applyStatePatch(doc: unknown, patch: StateOp[]): unknown {
  let out = deepClone(doc ?? null);
  patch.forEach((op, index) => {
    try {
      out = applyOne(out, op);
    } catch (error) {
      const why = error instanceof Error ? error.message.split('\n')[0] : String(error);
      throw new Error(`op ${index} (${op.op} ${JSON.stringify(op.path)}): ${why}`);
    }
  });
  return out;
}

function applyOne(doc: unknown, op: StateOp): unknown {
  if (typeof op !== 'object' || op === null || typeof op.path !== 'string') {
    throw new Error('not a JSON patch operation');
  }
  if (op.op === APPEND) {
    return append(doc, op.path, op.value);
  }
  if (op.path === '' && (op.op === 'replace' || op.op === 'add')) {
    return deepClone(op.value); // the whole value set anew (every state's first patch)
  }
  // The op's value is copied: the document must not share objects with the event.
  const copied = 'value' in op ? { ...op, value: deepClone(op.value) } : op;
  return applyOperation(doc, copied as Operation, true, true).newDocument;
}

function append(doc: unknown, path: string, text: unknown): unknown {
  if (typeof text !== 'string') {
    throw new Error('an append adds a string');
  }
  if (path === '') {
    return grown(doc, text);
  }
  const cut = path.lastIndexOf('/');
  const parent = resolve(doc, path.slice(0, cut)) as any;
  const last = unescapePathComponent(path.slice(cut + 1));
  const key = Array.isArray(parent) ? Number(last) : last;
  if (parent === null || typeof parent !== 'object' || !Object.prototype.hasOwnProperty.call(parent, key)) {
    throw new Error('no string at this path');
  }
  parent[key] = grown(parent[key], text);
  return doc;
}

function grown(before: unknown, text: string): string {
  if (typeof before !== 'string') {
    throw new Error(`appends to a string, found ${before === null ? 'null' : typeof before}`);
  }
  return before + text;
}

function resolve(doc: unknown, path: string): unknown {
  let node: any = doc;
  for (const part of path ? path.split('/').slice(1) : []) {
    const key = unescapePathComponent(part);
    if (node === null || typeof node !== 'object' || !Object.prototype.hasOwnProperty.call(node, key)) {
      throw new Error(`no value at ${JSON.stringify(path)}`);
    }
    node = node[Array.isArray(node) ? Number(key) : key];
  }
  return node;
}

/** A JSON value as Python's ``json.dumps`` writes it (", " and ": ", non-ASCII escaped),
 *  so an emitted value reads the same here as in the Python views. JavaScript has one
 *  number type: a whole float (2.0) reads 2 here. */
export function pyJson(value: unknown): string {
  if (value === null || value === undefined) {
    return 'null';
  }
  if (typeof value === 'string') {
    return pyString(value);
  }
  if (typeof value === 'number') {
    return pyNumber(value);
  }
  if (typeof value === 'boolean') {
    return value ? 'true' : 'false';
  }
  if (Array.isArray(value)) {
    return `[${value.map(pyJson).join(', ')}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  return `{${entries.map(([k, v]) => `${pyString(k)}: ${pyJson(v)}`).join(', ')}}`;
}

const SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

function pyString(text: string): string {
  // Python escapes every code unit outside ' '..'~' (surrogate pairs as two \u escapes).
  return `"${text.replace(/[^ -~]|["\\]/g, c => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

function pyNumber(x: number): string {
  if (!isFinite(x)) {
    return x > 0 ? 'Infinity' : x < 0 ? '-Infinity' : 'NaN';
  }
  if (Number.isInteger(x) && Math.abs(x) < 1e16) {
    return String(x); // most likely a Python int
  }
  // Python's float repr: the shortest digits, in exponent form below 1e-4 or from 1e16.
  const [mantissa, exp] = x.toExponential().split('e');
  const exponent = Number(exp);
  if (exponent < -4 || exponent >= 16) {
    const sign = exponent < 0 ? '-' : '+';
    return `${mantissa}e${sign}${String(Math.abs(exponent)).padStart(2, '0')}`;
  }
  const text = String(x);
  return text.includes('.') ? text : `${text}.0`;
}
