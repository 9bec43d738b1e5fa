// The renderer for run outputs (application/vnd.nbflow.run+json): draws the
// snapshot the kernel left, then follows the run through the server extension.
// It needs no kernel, so it stays live after a kernel restart or a page reload, and
// it tells the kernel that displayed the output to stop following the run meanwhile.
// When the run ends it writes the run's final bundle (MIME data, HTML snapshot,
// text) into the output, so the saved notebook shows the end, not "running".
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { RunsClient } from './client';
import { TERMINAL_STATUS } from './fold';
import { jupyterClient } from './jupyter';
import { MIME_TYPE, RunOutput, fromSnapshot } from './snapshot';
import { TraceView } from './trace';

const END_CHECK_MS = 1000;

export class RunOutputWidget extends Widget implements IRenderMime.IRenderer {
  private view: TraceView | null = null;
  private runId = '';
  private endCheck = 0;
  private model: IRenderMime.IMimeModel | null = null; // the latest: a notebook may swap it

  constructor() {
    super();
    this.addClass('nbflow-output-renderer');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[MIME_TYPE] as unknown as RunOutput;
    this.model = model;
    if (this.view && data.run_id === this.runId && data.mode === 'runtime') {
      return; // the same run, already followed live: a newer snapshot adds nothing
    }
    this.view?.dispose();
    window.clearInterval(this.endCheck);
    this.runId = data.run_id;
    const live = data.mode === 'runtime';
    const client = live ? jupyterClient() : null;
    const view = new TraceView(fromSnapshot(data), client, { compact: true });
    this.view = view;
    this.node.replaceChildren(view.node);
    if (client) {
      view.connect();
      if (!TERMINAL_STATUS.has(data.status)) {
        this.endCheck = window.setInterval(() => view.state.done && this.saveEnd(client), END_CHECK_MS);
        if (data.view) {
          // This output is drawn from here now: the kernel need not follow the run too.
          client.claimOutput(data.run_id, data.view).catch(() => undefined);
        }
      }
    }
  }

  /** The run ended: its output becomes the bundle of its whole log (once). */
  private saveEnd(client: RunsClient): void {
    window.clearInterval(this.endCheck);
    const runId = this.runId;
    client
      .fetch(`runs/${encodeURIComponent(runId)}/bundle`)
      .then(response => (response.ok ? response.json() : Promise.reject(new Error(`HTTP ${response.status}`))))
      .then(body => {
        if (!this.isDisposed && runId === this.runId) {
          this.model?.setData({ data: body.data });
        }
      })
      .catch(() => undefined); // the live view still shows the end; a later open saves it
  }

  dispose(): void {
    window.clearInterval(this.endCheck);
    this.view?.dispose();
    super.dispose();
  }
}

const extension: IRenderMime.IExtension = {
  id: 'nbflow:run-renderer',
  rendererFactory: {
    safe: true,
    mimeTypes: [MIME_TYPE],
    createRenderer: () => new RunOutputWidget()
  },
  // Ahead of the widget renderer (-10): this view needs no kernel, so it stays live
  // after a kernel restart or a page reload, where a widget shows "model not found".
  rank: -20,
  dataType: 'json'
};

export default extension;
