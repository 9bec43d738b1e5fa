// The nbflow live run view (anywidget front end; plain ESM, no build step).
//
// The kernel sends a small `summary` trait and, as custom messages, only the
// spans and output that changed since its last tick. Spans live in one store
// per model, shared by every view of it; the span tree is drawn virtually (only
// the rows in sight), and big subtrees start collapsed, so 10,000 spans stay cheap.

const ROW_H = 20;
const OVERSCAN = 10;
const AUTO_COLLAPSE_CHILDREN = 25;
const MAX_OUTPUT_CHARS = 200000;
const MAX_TIMELINE_ROWS = 30;

// Keyed by the widget's own `key`: anywidget hands initialize() and render() different
// model wrappers, so the wrapper itself cannot be the key.
/** @type {Map<string, Store>} */
const stores = new Map();

class Store {
  constructor() {
    /** @type {Map<string, any>} */
    this.spans = new Map();
    /** @type {Map<string | null, string[]>} */
    this.children = new Map();
    this.output = "";
    /** @type {Set<() => void>} */
    this.views = new Set();
  }

  reset() {
    this.spans.clear();
    this.children.clear();
  }

  /** @param {any[]} rows */
  upsert(rows) {
    for (const row of rows) {
      if (!this.spans.has(row.span_id)) {
        const parent = row.parent_id && this.spans.has(row.parent_id) ? row.parent_id : null;
        row._parent = parent;
        const list = this.children.get(parent) || [];
        list.push(row.span_id);
        this.children.set(parent, list);
      } else {
        row._parent = this.spans.get(row.span_id)._parent;
      }
      this.spans.set(row.span_id, row);
    }
  }

  changed() {
    for (const redraw of this.views) redraw();
  }
}

/** @param {any} model */
function storeFor(model) {
  const key = model.get("key");
  let store = stores.get(key);
  if (!store) {
    store = new Store();
    stores.set(key, store);
  }
  return store;
}

/** @param {{model: any}} ctx */
function initialize({ model }) {
  const store = storeFor(model);
  /** @param {any} msg */
  const onMessage = (msg) => {
    if (msg.kind === "input_result") {
      const settle = pending.get(msg.token);
      pending.delete(msg.token);
      if (settle) settle(msg.error || null);
      return;
    }
    if (msg.kind === "spans") {
      if (msg.reset) store.reset();
      store.upsert(msg.spans);
    } else if (msg.kind === "output") {
      store.output = msg.reset ? msg.text : store.output + msg.text;
      if (store.output.length > MAX_OUTPUT_CHARS) {
        store.output = store.output.slice(-MAX_OUTPUT_CHARS);
      }
    }
    store.changed();
  };
  model.on("msg:custom", onMessage);
  // Ask for everything so far: a reloaded page has the summary but no spans.
  model.send({ kind: "sync" });
  return () => {
    model.off("msg:custom", onMessage);
    stores.delete(model.get("key"));
  };
}

// Answers sent through the kernel, waiting for its reply: token -> settle(error or null).
/** @type {Map<string, (error: string | null) => void>} */
const pending = new Map();
let sent = 0;

/** @param {any} model @param {string} name @param {unknown} value @returns {Promise<string | null>} */
function sendInput(model, name, value) {
  const token = `${Date.now()}-${++sent}`;
  return new Promise((resolve) => {
    pending.set(token, resolve);
    model.send({ kind: "input", name, value, token });
  });
}

// The value a field's text stands for, or what is wrong with it: as parseField in the
// JupyterLab extension's waits.ts (the kernel checks it against the schema again).
/** @param {string} kind @param {string} text @param {any} schema @returns {{ok: boolean, value?: unknown, error?: string}} */
function parseField(kind, text, schema) {
  if (kind === "string") return { ok: true, value: text };
  if (kind === "enum") {
    const options = (schema && schema.enum) || [];
    const index = text.trim() === "" ? NaN : Number(text);
    return Number.isInteger(index) && index >= 0 && index < options.length
      ? { ok: true, value: options[index] }
      : { ok: false, error: "choose one of the options" };
  }
  if (kind === "boolean") {
    return text === "true" || text === "false" ? { ok: true, value: text === "true" } : { ok: false, error: "choose yes or no" };
  }
  if (kind === "integer" || kind === "number") {
    const value = text.trim() === "" ? NaN : Number(text);
    if (!isFinite(value)) return { ok: false, error: "enter a number" };
    if (kind === "integer" && !Number.isInteger(value)) return { ok: false, error: "enter a whole number" };
    return { ok: true, value };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: `not JSON: ${error instanceof Error ? error.message : error}` };
  }
}

/**
 * The answer form of a wait for input: its prompt, one field (the kernel chose its kind
 * from the schema), and what went wrong next to it.
 * @param {any} model @param {any} wait
 */
function inputForm(model, wait) {
  const form = /** @type {HTMLFormElement} */ (h("form", "nbf-ask"));
  form.dataset.input = String(wait.name);
  form.dataset.kind = wait.field;
  form.noValidate = true;
  // JupyterLab's notebook shortcuts (Enter, a, b, d d...) must not take the keys typed here.
  form.setAttribute("data-lm-suppress-shortcuts", "");
  const row = h("div", "nbf-ask-row");
  const error = h("div", "nbf-ask-error");
  error.setAttribute("role", "alert");
  form.append(h("div", "nbf-ask-prompt", wait.prompt || `The run waits for input '${wait.name}'.`), row, error);
  form.append(h("div", "nbf-ask-meta", wait.text || ""));
  /** @type {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | null} */
  let field = null;
  let busy = false;
  /** @param {string} text @param {string} state */
  const show = (text, state) => {
    error.textContent = text;
    form.dataset.state = state;
  };
  /** @param {boolean} disabled */
  const disable = (disabled) => {
    for (const c of form.querySelectorAll("button, input, select, textarea")) {
      /** @type {HTMLButtonElement} */ (c).disabled = disabled;
    }
  };
  /** @param {string} text */
  const submit = async (text) => {
    if (busy) return;
    const parsed = parseField(wait.field, text, wait.schema);
    if (!parsed.ok) return show(parsed.error || "", "error");
    busy = true;
    disable(true);
    show("sending…", "pending");
    const problem = await sendInput(model, String(wait.name), parsed.value);
    busy = false;
    if (problem) {
      show(problem, "error");
      disable(false);
    } else {
      show("sent: the run goes on", "sent");
    }
  };
  if (wait.field === "boolean") {
    for (const [label, value] of [["Yes", "true"], ["No", "false"]]) {
      const button = /** @type {HTMLButtonElement} */ (h("button", `nbf-ask-send nbf-ask-${value}`, label));
      button.type = "button";
      button.onclick = () => void submit(value);
      row.appendChild(button);
    }
  } else {
    field = makeField(wait);
    field.className = "nbf-ask-field";
    field.setAttribute("aria-label", String(wait.name));
    const send = /** @type {HTMLButtonElement} */ (h("button", "nbf-ask-send", "Send"));
    send.type = "submit";
    row.append(field, send);
    // Enter sends, whatever the page around does with the key (a notebook swallows the
    // keypress that would submit the form by itself).
    const input = field;
    if (!(input instanceof HTMLTextAreaElement)) {
      input.addEventListener("keydown", (event) => {
        if (/** @type {KeyboardEvent} */ (event).key !== "Enter") return;
        event.preventDefault();
        void submit(input.value);
      });
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void submit(field ? field.value : "");
  });
  return form;
}

/** @param {any} wait */
function makeField(wait) {
  const schema = wait.schema || {};
  if (wait.field === "enum") {
    const select = document.createElement("select");
    select.append(new Option("choose…", ""));
    schema.enum.forEach((/** @type {unknown} */ v, /** @type {number} */ i) => {
      select.append(new Option(typeof v === "string" ? v : JSON.stringify(v), String(i)));
    });
    return select;
  }
  if (wait.field === "integer" || wait.field === "number") {
    const input = document.createElement("input");
    input.type = "number";
    input.step = wait.field === "integer" ? "1" : "any";
    if (typeof schema.minimum === "number") input.min = String(schema.minimum);
    if (typeof schema.maximum === "number") input.max = String(schema.maximum);
    return input;
  }
  if (wait.field === "string") {
    const input = document.createElement("input");
    input.type = "text";
    input.placeholder = "your answer";
    return input;
  }
  const area = document.createElement("textarea");
  area.rows = 3;
  area.placeholder = "the answer as JSON";
  return area;
}

/** @param {string} tag @param {string} [cls] @param {string} [text] */
function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** @param {number | null | undefined} ms */
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "…";
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)}m${Math.round((ms % 60000) / 1000)}s`;
}

/** @param {number} n */
function fmtInt(n) {
  return (n || 0).toLocaleString("en-US");
}

/** @param {{model: any, el: HTMLElement}} ctx */
function render({ model, el }) {
  const store = storeFor(model);
  /** @type {Map<string, boolean>} */
  const toggled = new Map();
  const root = h("div", "nbf-run nbf-live");
  const head = h("div", "nbf-head");
  const steps = h("div", "nbf-steps");
  const waitBox = h("div", "nbf-wait");
  const kids = h("div", "nbf-kids");
  const timeline = h("div", "nbf-timeline");
  const treeInfo = h("div", "nbf-section");
  const tree = h("div", "nbf-tree");
  const spacer = h("div");
  const output = h("pre", "nbf-output");
  const error = h("div", "nbf-error");
  spacer.style.position = "relative";
  tree.appendChild(spacer);
  root.append(head, steps, waitBox, kids, timeline, treeInfo, tree, output, error);
  el.appendChild(root);

  /** @type {string[]} */
  let rows = [];
  let scheduled = false;
  let followOutput = true;
  let summaryAt = Date.now();

  function drawHead() {
    const s = model.get("summary") || {};
    const usage = s.usage || {};
    head.replaceChildren(
      h("span", `nbf-badge nbf-${s.status}`, s.status || "…"),
      h("span", "nbf-name", s.workflow || ""),
      h("span", "nbf-id", `run ${s.run_id || model.get("run_id")} · ${s.mode || ""}`),
      h("span", "nbf-id", elapsed(s)),
      h(
        "span",
        "nbf-usage",
        `${fmtInt(usage.input_tokens)} in · ${fmtInt(usage.output_tokens)} out · ` +
          `${fmtInt(usage.llm_calls)} LLM calls · $${(usage.cost_usd || 0).toFixed(4)}`,
      ),
    );
    if (s.restarts) head.appendChild(h("span", "nbf-tag", `restarted ×${s.restarts}: ${s.reason || ""}`));
    steps.replaceChildren(
      ...(s.steps || []).map((/** @type {any} */ st) => {
        const chip = h("span", `nbf-step nbf-${st.state}`, st.step);
        chip.title = `${st.state}${st.detail ? `: ${st.detail}` : ""}`;
        return chip;
      }),
    );
    drawWait(s);
    drawChildren(s);
    drawTimeline(s);
    drawError(s);
  }

  // Kept while the same wait lasts: what a person types is not redrawn away.
  /** @param {any} s */
  function drawWait(s) {
    const wait = s.status === "waiting" ? s.wait : null;
    const key = wait ? JSON.stringify(wait) : "";
    if (waitBox.dataset.key === key) return;
    waitBox.dataset.key = key;
    waitBox.dataset.kind = wait ? wait.kind : "";
    if (!wait) {
      waitBox.replaceChildren();
    } else if (wait.kind === "input" && s.mode === "runtime") {
      waitBox.replaceChildren(inputForm(model, wait));
    } else {
      waitBox.replaceChildren(h("div", "nbf-ask-meta", `waiting for ${wait.text}`));
    }
  }

  /** @param {any} s */
  function drawChildren(s) {
    const children = s.children || [];
    const key = JSON.stringify(children);
    if (kids.dataset.key === key) return;
    kids.dataset.key = key;
    if (!children.length) {
      kids.replaceChildren();
      return;
    }
    const ended = children.filter((/** @type {any} */ c) => c.status !== "running").length;
    const more = (s.child_count || children.length) - children.length;
    const table = h("table", "nbf-children");
    const headRow = h("tr");
    for (const title of ["child run", "id", "status", "tokens", "cost"]) headRow.appendChild(h("th", "", title));
    table.appendChild(headRow);
    for (const c of children) {
      const row = h("tr", `nbf-${c.status}`);
      row.dataset.child = c.child_id;
      const id = h("td");
      id.appendChild(h("code", "", c.child_id));
      row.append(
        h("td", "", c.workflow || ""),
        id,
        h("td", "", c.status),
        h("td", "nbf-num", c.total_tokens ? fmtInt(c.total_tokens) : ""),
        h("td", "nbf-num", c.cost_usd ? `$${c.cost_usd.toFixed(4)}` : ""),
      );
      table.appendChild(row);
    }
    const title = `child runs: ${fmtInt(s.child_count || children.length)} (${fmtInt(ended)} ended)`;
    const box = h("div", "nbf-table-box");
    box.appendChild(table);
    kids.replaceChildren(h("div", "nbf-section", title + (more > 0 ? `, ${fmtInt(more)} not shown` : "")), box);
  }

  /** @param {any} s */
  function elapsed(s) {
    const start = s.started_at || s.created_at;
    if (!start) return "";
    // The kernel's clock: its "now" at the last summary, moved on by the time since.
    const end = s.ended_at || s.now + (Date.now() - summaryAt) / 1000;
    return fmtMs((end - start) * 1000);
  }

  /** @param {any} s */
  function drawTimeline(s) {
    /** @type {{label: string, start: number, end: number | null, state: string}[]} */
    let bars = (s.steps || []).map((/** @type {any} */ st) => ({
      label: st.step,
      start: st.start,
      end: st.end,
      state: st.state,
    }));
    if (!bars.length) bars = topLevelBars(s);
    if (!bars.length) {
      timeline.replaceChildren();
      return;
    }
    const t0 = Math.min(...bars.map((b) => b.start));
    const t1 = Math.max(s.ended_at || s.now || 0, ...bars.map((b) => b.end || s.now || b.start));
    const span = Math.max(t1 - t0, 0.001);
    timeline.replaceChildren(
      ...bars.map((b) => {
        const row = h("div", "nbf-bar-row");
        const track = h("div", "nbf-bar-track");
        const bar = h("div", `nbf-bar nbf-${b.state}`);
        const end = b.end || t1;
        bar.style.left = `${(100 * (b.start - t0)) / span}%`;
        bar.style.width = `${Math.max((100 * (end - b.start)) / span, 0.5)}%`;
        bar.title = `${b.label}: ${fmtMs((end - b.start) * 1000)}`;
        track.appendChild(bar);
        row.append(h("span", "nbf-bar-label", b.label), track, h("span", "nbf-num", fmtMs((end - b.start) * 1000)));
        return row;
      }),
    );
  }

  // Without progress steps: one bar per kind of top-level step, from its first start
  // to its last end, so a fan-out of thousands of calls is one line ("leaf ×10,000").
  /** @param {any} s */
  function topLevelBars(s) {
    /** @type {Map<string, any>} */
    const groups = new Map();
    for (const rootId of store.children.get(null) || []) {
      for (const id of store.children.get(rootId) || []) {
        const sp = store.spans.get(id);
        const end = sp.duration_ms === null ? null : sp.start + sp.duration_ms / 1000;
        const g = groups.get(sp.name);
        if (!g) {
          groups.set(sp.name, { name: sp.name, start: sp.start, end, count: 1, states: new Set([sp.status]) });
          continue;
        }
        g.count += 1;
        g.start = Math.min(g.start, sp.start);
        g.end = g.end === null || end === null ? null : Math.max(g.end, end);
        g.states.add(sp.status);
      }
    }
    return [...groups.values()].slice(0, MAX_TIMELINE_ROWS).map((g) => ({
      label: g.count > 1 ? `${g.name} ×${fmtInt(g.count)}` : g.name,
      start: g.start,
      end: g.end === null ? s.ended_at || null : g.end,
      state: g.states.has("error") ? "error" : g.states.has("running") ? "running" : "ok",
    }));
  }

  /** @param {any} s */
  function drawError(s) {
    if (!s.error) {
      error.style.display = "none";
      return;
    }
    error.style.display = "";
    const details = h("details");
    details.append(h("summary", "", "traceback"), h("pre", "", s.traceback || ""));
    error.replaceChildren(h("b", "", s.error), details); // the error line names its type
  }

  /** @param {string} id */
  function isOpen(id) {
    const choice = toggled.get(id);
    if (choice !== undefined) return choice;
    const kids = store.children.get(id);
    return !kids || kids.length <= AUTO_COLLAPSE_CHILDREN || store.spans.get(id)._parent === null;
  }

  function flatten() {
    /** @type {string[]} */
    const out = [];
    const stack = [...(store.children.get(null) || [])].reverse();
    /** @type {Map<string, number>} */
    const depth = new Map();
    while (stack.length) {
      const id = /** @type {string} */ (stack.pop());
      out.push(id);
      const kids = store.children.get(id);
      if (kids && isOpen(id)) {
        const d = (depth.get(id) || 0) + 1;
        for (let i = kids.length - 1; i >= 0; i--) {
          depth.set(kids[i], d);
          stack.push(kids[i]);
        }
      }
    }
    rows = out;
    return depth;
  }

  /** @type {Map<string, number>} */
  let depths = new Map();

  function drawTree() {
    depths = flatten();
    const count = store.spans.size;
    treeInfo.textContent = `${fmtInt(count)} span${count === 1 ? "" : "s"}`;
    spacer.style.height = `${rows.length * ROW_H}px`;
    drawRows();
  }

  function drawRows() {
    const first = Math.max(0, Math.floor(tree.scrollTop / ROW_H) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((tree.scrollTop + (tree.clientHeight || 320)) / ROW_H) + OVERSCAN);
    const nodes = [];
    for (let i = first; i < last; i++) nodes.push(spanRow(rows[i], i));
    spacer.replaceChildren(...nodes);
  }

  /** @param {string} id @param {number} index */
  function spanRow(id, index) {
    const sp = store.spans.get(id);
    const row = h("div", `nbf-row nbf-${sp.status}`);
    row.style.top = `${index * ROW_H}px`;
    row.style.paddingLeft = `${4 + 14 * (depths.get(id) || 0)}px`;
    const kids = store.children.get(id);
    const toggle = h("span", "nbf-toggle", kids ? (isOpen(id) ? "▾" : "▸") : "");
    if (kids) {
      toggle.onclick = () => {
        toggled.set(id, !isOpen(id));
        drawTree();
      };
    }
    const label = h("span", "nbf-label");
    label.append(h("span", `nbf-dot nbf-${sp.status}`), ` ${sp.name} `);
    if (kids && !isOpen(id)) label.append(h("span", "nbf-tag", `${fmtInt(kids.length)} children`), " ");
    label.append(h("span", "nbf-tag", sp.kind));
    if (sp.cached) label.append(" ", h("span", "nbf-tag", "cached"));
    if (sp.attempts > 1) label.append(" ", h("span", "nbf-tag", `${sp.attempts} attempts`));
    if (sp.error) label.title = sp.error;
    row.append(
      toggle,
      label,
      h("span", "nbf-num", sp.tokens ? `${fmtInt(sp.tokens)} tok` : ""),
      h("span", "nbf-num", sp.cost_usd ? `$${sp.cost_usd.toFixed(4)}` : ""),
      h("span", "nbf-num", fmtMs(sp.duration_ms)),
    );
    return row;
  }

  function drawOutput() {
    output.style.display = store.output ? "" : "none";
    if (output.textContent !== store.output) {
      output.textContent = store.output;
      if (followOutput) output.scrollTop = output.scrollHeight;
    }
  }

  function redraw() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      drawHead();
      drawTree();
      drawOutput();
    });
  }

  tree.addEventListener("scroll", () => drawRows());
  output.addEventListener("scroll", () => {
    followOutput = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
  });
  const onSummary = () => {
    summaryAt = Date.now();
    redraw();
  };
  // A quiet run sends nothing: keep its clock moving here.
  const clock = setInterval(() => {
    if (!(model.get("summary") || {}).ended_at) drawHead();
  }, 1000);
  model.on("change:summary", onSummary);
  store.views.add(redraw);
  // The first draw is not deferred: a view drawn again (its output updated in place)
  // never shows a blank frame.
  drawHead();
  drawTree();
  drawOutput();
  return () => {
    clearInterval(clock);
    model.off("change:summary", onSummary);
    store.views.delete(redraw);
  };
}

export default { initialize, render };
