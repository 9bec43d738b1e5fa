// What a waiting run waits for, and the form field that answers a wait for input:
// pure functions (no DOM), shared by the trace view's form and the runs list.
// describeWait says what nbflow/_waitinfo.py's describe_wait says.

export interface Wait {
  kind: string; // input, sleep or children
  name?: string | null;
  prompt?: string | null;
  schema?: Schema | null;
  until?: number | null;
  timeout_s?: number | null;
  runs?: string[] | null;
}

export type Schema = { [key: string]: any };

export type FieldKind = 'boolean' | 'enum' | 'integer' | 'number' | 'string' | 'json';

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

const MAX_PROMPT_CHARS = 80;

export function describeWait(wait: Wait | null | undefined, now: Date = new Date()): string {
  if (!wait) {
    return '';
  }
  if (wait.kind === 'input') {
    const prompt = short(wait.prompt ?? '');
    return `input '${wait.name}'${prompt ? `: ${prompt}` : ''}${deadline(wait.until, now, ' (answer by ', ')')}`;
  }
  if (wait.kind === 'sleep') {
    return `timer${deadline(wait.until, now, ' until ', '')}`;
  }
  if (wait.kind === 'children') {
    const count = wait.runs?.length ?? 0;
    return `${count} child run${count === 1 ? '' : 's'}`;
  }
  return String(wait.kind ?? '');
}

function short(text: string): string {
  const one = text.split(/\s+/).filter(Boolean).join(' ');
  return one.length <= MAX_PROMPT_CHARS ? one : one.slice(0, MAX_PROMPT_CHARS - 1) + '…';
}

function deadline(until: number | null | undefined, now: Date, before: string, after: string): string {
  if (typeof until !== 'number' || !isFinite(until)) {
    return '';
  }
  const when = new Date(until * 1000);
  const sameDay = when.toDateString() === now.toDateString();
  const pad = (n: number) => String(n).padStart(2, '0');
  const clock = `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  const day = `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} `;
  return `${before}${sameDay ? '' : day}${clock}${after}`;
}

/** The field a schema asks for: a yes/no, a choice, a number, a text, or JSON for the rest. */
export function fieldKind(schema: Schema | null | undefined): FieldKind {
  if (!schema) {
    return 'json';
  }
  if (Array.isArray(schema.enum) && schema.enum.length) {
    return 'enum';
  }
  const types = (Array.isArray(schema.type) ? schema.type : [schema.type]).filter((t: unknown) => t !== 'null');
  if (types.length !== 1) {
    return 'json';
  }
  const kind = types[0];
  return kind === 'boolean' || kind === 'integer' || kind === 'number' || kind === 'string' ? kind : 'json';
}

/** The value a field's text stands for, or what is wrong with it (checked again by the server). */
export function parseField(kind: FieldKind, text: string, schema: Schema | null | undefined): Parsed {
  if (kind === 'string') {
    return { ok: true, value: text };
  }
  if (kind === 'enum') {
    const options: unknown[] = schema?.enum ?? [];
    const index = text.trim() === '' ? NaN : Number(text);
    return Number.isInteger(index) && index >= 0 && index < options.length
      ? { ok: true, value: options[index] }
      : { ok: false, error: 'choose one of the options' };
  }
  if (kind === 'boolean') {
    return text === 'true' || text === 'false' ? { ok: true, value: text === 'true' } : { ok: false, error: 'choose yes or no' };
  }
  if (kind === 'integer' || kind === 'number') {
    const value = text.trim() === '' ? NaN : Number(text);
    if (!isFinite(value)) {
      return { ok: false, error: 'enter a number' };
    }
    return kind === 'integer' && !Number.isInteger(value) ? { ok: false, error: 'enter a whole number' } : { ok: true, value };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: `not JSON: ${error instanceof Error ? error.message : error}` };
  }
}

/** How an enum option reads in a list: strings as they are, other values as JSON. */
export function optionLabel(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}
