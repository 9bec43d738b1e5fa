// The notebook widget (anywidget, loaded as a prebuilt ES module): the same trace view
// as the JupyterLab renderer, the runs panel and /ui, fed by the kernel's messages
// instead of the server's SSE. The kernel sends the run's events as it folds them;
// each view asks for a replay of everything so far (a reloaded page, a second view of
// one output) and folds it with the viewer's own fold.
import { RunSource } from './client';
import { RunEvent, RunState, TERMINAL } from './fold';
import { TraceView } from './trace';

/** The part of anywidget's model this module uses. */
export interface WidgetModel {
  get(name: string): any;
  send(content: unknown): void;
  on(name: string, callback: (message: any) => void): void;
  off(name: string, callback: (message: any) => void): void;
}

type Reply = { kind: string; token?: string; error?: string | null };

let tokens = 0;

/** The kernel as a run source: a replay, then live events, and requests answered by token. */
export class KernelSource implements RunSource {
  cancel?: (runId: string) => Promise<unknown>;

  constructor(private model: WidgetModel) {
    if (model.get('mode') === 'runtime') {
      this.cancel = () => this.request({ kind: 'cancel' });
    }
  }

  follow(_runId: string, _after: string, onEvents: (events: RunEvent[]) => void, signal: AbortSignal): Promise<void> {
    const token = newToken();
    return new Promise(resolve => {
      let replayed = false;
      const stop = () => {
        this.model.off('msg:custom', onMessage);
        resolve();
      };
      const onMessage = (message: any) => {
        if (message?.kind !== 'events') {
          return;
        }
        // Live events before this view's replay are in the replay; another view's
        // replay is not this one's.
        if (message.replay !== undefined ? message.replay !== token : !replayed) {
          return;
        }
        replayed = replayed || Boolean(message.done);
        const events = message.events as RunEvent[];
        onEvents(events);
        if (events.some(e => TERMINAL.has(e.type))) {
          stop();
        }
      };
      signal.addEventListener('abort', stop);
      this.model.on('msg:custom', onMessage);
      this.model.send({ kind: 'sync', token });
    });
  }

  sendInput(_runId: string, name: string, value: unknown): Promise<unknown> {
    return this.request({ kind: 'input', name, value });
  }

  /** Send a request; resolves with the kernel's reply, rejects with the error it names. */
  private request(content: Record<string, unknown>): Promise<unknown> {
    const token = newToken();
    return new Promise((resolve, reject) => {
      const onMessage = (reply: Reply) => {
        if (reply?.token !== token || reply.kind !== `${content.kind}_result`) {
          return;
        }
        this.model.off('msg:custom', onMessage);
        if (reply.error) {
          reject(new Error(reply.error));
        } else {
          resolve(reply);
        }
      };
      this.model.on('msg:custom', onMessage);
      this.model.send({ ...content, token });
    });
  }
}

function newToken(): string {
  tokens += 1;
  return `${Date.now().toString(36)}-${tokens}-${Math.random().toString(36).slice(2, 8)}`;
}

function render({ model, el }: { model: WidgetModel; el: HTMLElement }): () => void {
  const view = new TraceView(new RunState(String(model.get('run_id'))), new KernelSource(model), { compact: true });
  el.classList.add('nbflow-widget');
  el.replaceChildren(view.node);
  view.connect();
  return () => view.dispose();
}

export default { render };
