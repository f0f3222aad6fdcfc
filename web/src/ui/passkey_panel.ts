/** Panel 4: the passkey experiment, architecture by architecture. */
import type { Playground } from "../main.js";
import type { EngineEvent, PasskeyRow } from "../protocol.js";
import { ARCHS, type ArchName, type SizeName } from "../engine/choices.js";
import { $, num, setInfo } from "./dom.js";

function addRow(body: HTMLElement, r: PasskeyRow): void {
  const tr = document.createElement("tr");
  const cell = (text: string, cls = "") => {
    const td = document.createElement("td");
    td.textContent = text;
    td.className = cls;
    tr.append(td);
    return td;
  };
  cell(r.run);
  if (r.error) {
    const td = cell(r.error, "bad");
    td.colSpan = 3;
  } else {
    cell(r.key.join(""), "mono");
    // a prediction that is not a digit at all (filler, KEY, QUERY) shows as a dot; its id in the tooltip
    const answer = cell(r.answer.map((t) => (t <= 9 ? String(t) : "·")).join(""), `mono ${r.answer.join() === r.key.join() ? "ok" : "bad"}`);
    answer.title = `token ids ${r.answer.join(" ")}`;
    cell(`${(r.accuracy * 100).toFixed(0)}% (${r.correct}/${r.trials})`);
  }
  body.append(tr);
}

export function wirePasskeyPanel(pg: Playground): void {
  const archBox = $("pk-archs");
  for (const a of ARCHS) {
    const label = document.createElement("label");
    label.className = "check";
    const box = Object.assign(document.createElement("input"), { type: "checkbox", value: a.name, checked: a.name === "transformer" || a.name === "mamba" });
    label.append(box, a.label);
    archBox.append(label);
  }
  const depth = $<HTMLInputElement>("pk-depth");
  depth.oninput = () => ($("pk-depth-out").textContent = depth.value);

  const start = $<HTMLButtonElement>("passkey");
  const stop = $<HTMLButtonElement>("pk-stop");
  pg.busy.register([start], [stop]);
  stop.onclick = () => pg.client.stop();
  start.onclick = () =>
    void pg.busy.run("passkey", async () => {
      const archs = Array.from(archBox.querySelectorAll<HTMLInputElement>("input:checked")).map((b) => b.value as ArchName);
      const body = $("pk-table").querySelector("tbody")!;
      body.innerHTML = "";
      pg.charts.passkeyLoss.clear();
      pg.charts.passkeyAccuracy.clear();
      pg.passkeyRows = [];
      const series = new Map<string, number>();
      const onEvent = (e: EngineEvent) => {
        if (e.type === "status") setInfo("pk-status", e.text);
        else if (e.type === "step") {
          if (!series.has(e.run)) series.set(e.run, pg.charts.passkeyLoss.addSeries(e.run));
          pg.charts.passkeyLoss.push(series.get(e.run)!, { x: e.step, y: e.loss });
        } else if (e.type === "row") {
          pg.passkeyRows.push(e);
          addRow(body, e);
          if (!e.error) pg.charts.passkeyAccuracy.set(e.run, e.accuracy);
        }
      };
      try {
        const r = await pg.client.request<{ rows: PasskeyRow[]; stopped: boolean }>(
          {
            kind: "passkey",
            archs,
            includeCurrent: $<HTMLInputElement>("pk-current").checked,
            size: $<HTMLSelectElement>("pk-size").value as SizeName,
            trainLength: num("pk-train-length"),
            steps: num("pk-steps"),
            batch: num("pk-batch"),
            lr: num("pk-lr"),
            length: num("pk-length"),
            depth: num("pk-depth"),
            trials: num("pk-trials"),
            seed: num("seed"),
          },
          onEvent,
        );
        setInfo("pk-status", `${r.stopped ? "stopped" : "done"}: ${r.rows.length} model${r.rows.length === 1 ? "" : "s"} scored at context length ${num("pk-length")}, depth ${num("pk-depth")}`);
      } catch (e) {
        setInfo("pk-status", (e as Error).message, true);
      }
    });
}
