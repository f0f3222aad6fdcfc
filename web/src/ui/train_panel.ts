/** Panel 3: train the current model on passkey in the tab, with a live loss curve. */
import type { Playground } from "../main.js";
import type { EngineEvent, TrainResult } from "../protocol.js";
import { $, num, setInfo } from "./dom.js";

export function wireTrainPanel(pg: Playground): void {
  const start = $<HTMLButtonElement>("train");
  const stop = $<HTMLButtonElement>("train-stop");
  pg.busy.register([start], [stop]);
  stop.onclick = () => pg.client.stop();
  start.onclick = () =>
    void pg.busy.run("train", async () => {
      if (!pg.model) return setInfo("train-stats", "no model yet", true);
      const series = pg.charts.loss.addSeries(pg.model.label);
      const onEvent = (e: EngineEvent) => {
        if (e.type !== "step") return;
        pg.charts.loss.push(series, { x: e.step, y: e.loss });
        setInfo("train-stats", `step ${e.step}: loss ${e.loss.toFixed(4)}, lr ${e.lr.toExponential(2)}, ${e.seconds.toFixed(1)} s`);
      };
      try {
        const r = await pg.client.request<TrainResult>(
          { kind: "train", length: num("train-length"), steps: num("train-steps"), batch: num("train-batch"), lr: num("train-lr"), seed: num("seed") },
          onEvent,
        );
        const last = r.losses[r.losses.length - 1];
        setInfo(
          "train-stats",
          `${r.stopped ? "stopped after" : "done:"} ${r.losses.length} steps, final loss ${last?.toFixed(4)}, ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.seconds.toFixed(1)} s`,
        );
      } catch (e) {
        setInfo("train-stats", (e as Error).message, true);
      }
    });
}
