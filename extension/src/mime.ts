// The renderer for run outputs (application/vnd.nbflow.run+json): draws the
// snapshot the kernel left, then follows the run through the server extension.
// It needs no kernel, so it stays live after a kernel restart or a page reload, and
// it tells the kernel that displayed the output to stop following the run meanwhile.
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { jupyterClient } from './jupyter';
import { MIME_TYPE, RunOutput, fromSnapshot } from './snapshot';
import { TraceView } from './trace';

export class RunOutputWidget extends Widget implements IRenderMime.IRenderer {
  private view: TraceView | null = null;
  private runId = '';

  constructor() {
    super();
    this.addClass('nbflow-output-renderer');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const data = model.data[MIME_TYPE] as unknown as RunOutput;
    if (this.view && data.run_id === this.runId && data.mode === 'runtime') {
      return; // the same run, already followed live: a newer snapshot adds nothing
    }
    this.view?.dispose();
    this.runId = data.run_id;
    const live = data.mode === 'runtime';
    const client = jupyterClient();
    this.view = new TraceView(fromSnapshot(data), live ? client : null, { compact: true });
    this.node.replaceChildren(this.view.node);
    if (live) {
      this.view.connect();
      if (data.view && data.status !== 'succeeded' && data.status !== 'failed' && data.status !== 'cancelled') {
        // This output is drawn from here now: the kernel need not follow the run too.
        client.claimOutput(data.run_id, data.view).catch(() => undefined);
      }
    }
  }

  dispose(): void {
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
