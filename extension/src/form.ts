// The answer form of a run waiting for input: its prompt, one field built from the
// wait's JSON Schema (yes/no buttons, a choice, a number, a text, or JSON), and what
// went wrong next to the field. Framework-free DOM, in the trace view.
import { FieldKind, Wait, describeWait, fieldKind, optionLabel, parseField } from './waits';

export type Send = (name: string, value: unknown) => Promise<void>;

export class InputForm {
  readonly node: HTMLFormElement;
  private kind: FieldKind;
  private field: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | null = null;
  private error: HTMLElement;
  private busy = false;

  constructor(
    readonly wait: Wait,
    private send: Send
  ) {
    this.kind = fieldKind(wait.schema);
    const form = document.createElement('form');
    form.className = 'nbflow-ask';
    form.dataset.input = String(wait.name);
    form.dataset.kind = this.kind;
    form.noValidate = true; // the schema is checked here and by the server, with its words
    // JupyterLab's notebook shortcuts (Enter, a, b, d d...) must not take the keys typed here.
    form.setAttribute('data-lm-suppress-shortcuts', '');
    const prompt = el('div', 'nbflow-ask-prompt', wait.prompt || `The run waits for input '${wait.name}'.`);
    const row = el('div', 'nbflow-ask-row');
    row.append(...this.controls());
    this.error = el('div', 'nbflow-ask-error');
    this.error.setAttribute('role', 'alert');
    const meta = el('div', 'nbflow-ask-meta', describeWait(wait));
    form.append(prompt, row, this.error, meta);
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this.submit(this.field ? this.field.value : '');
    });
    this.node = form;
  }

  private controls(): HTMLElement[] {
    if (this.kind === 'boolean') {
      return [button('Yes', 'true', this), button('No', 'false', this)];
    }
    const field = this.makeField();
    field.className = 'nbflow-ask-field';
    field.setAttribute('aria-label', String(this.wait.name));
    this.field = field;
    if (!(field instanceof HTMLTextAreaElement)) {
      // Enter sends, whatever the page around does with the key (a notebook swallows
      // the keypress that would submit the form by itself).
      field.addEventListener('keydown', event => {
        if ((event as KeyboardEvent).key === 'Enter') {
          event.preventDefault();
          void this.submit(field.value);
        }
      });
    }
    const send = el('button', 'nbflow-ask-send', 'Send') as HTMLButtonElement;
    send.type = 'submit';
    return [field, send];
  }

  private makeField(): HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement {
    const schema = this.wait.schema ?? {};
    if (this.kind === 'enum') {
      const select = document.createElement('select');
      const options: unknown[] = schema.enum;
      select.append(new Option('choose…', ''), ...options.map((v, i) => new Option(optionLabel(v), String(i))));
      return select;
    }
    if (this.kind === 'integer' || this.kind === 'number') {
      const input = document.createElement('input');
      input.type = 'number';
      input.step = this.kind === 'integer' ? '1' : 'any';
      for (const [attr, key] of [['min', 'minimum'], ['max', 'maximum']]) {
        if (typeof schema[key] === 'number') {
          input.setAttribute(attr, String(schema[key]));
        }
      }
      return input;
    }
    if (this.kind === 'string') {
      const input = document.createElement('input');
      input.type = 'text';
      input.placeholder = 'your answer';
      return input;
    }
    const area = document.createElement('textarea');
    area.rows = 3;
    area.placeholder = 'the answer as JSON';
    return area;
  }

  /** Send the answer ``text`` stands for; problems go next to the field. */
  async submit(text: string): Promise<void> {
    if (this.busy) {
      return;
    }
    const parsed = parseField(this.kind, text, this.wait.schema);
    if (!parsed.ok) {
      this.show(parsed.error, 'error');
      return;
    }
    this.busy = true;
    this.setDisabled(true);
    this.show('sending…', 'pending');
    try {
      await this.send(String(this.wait.name), parsed.value);
      this.show('sent: the run goes on', 'sent');
    } catch (error) {
      this.show(error instanceof Error ? error.message : String(error), 'error');
      this.setDisabled(false);
    } finally {
      this.busy = false;
    }
  }

  private show(text: string, state: 'error' | 'pending' | 'sent'): void {
    this.error.textContent = text;
    this.node.dataset.state = state;
  }

  private setDisabled(disabled: boolean): void {
    for (const control of Array.from(this.node.querySelectorAll<HTMLButtonElement | HTMLInputElement>('button, input, select, textarea'))) {
      control.disabled = disabled;
    }
  }
}

function el(tag: string, className: string, text?: string): HTMLElement {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function button(label: string, value: string, form: InputForm): HTMLButtonElement {
  const node = el('button', `nbflow-ask-send nbflow-ask-${value}`, label) as HTMLButtonElement;
  node.type = 'button';
  node.value = value;
  node.addEventListener('click', () => void form.submit(value));
  return node;
}
