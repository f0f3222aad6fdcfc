/** Panel 1: a fresh seeded model from a preset, or a checkpoint from local files. */
import type { Playground } from "../main.js";
import type { ModelInfo } from "../protocol.js";
import type { ArchName, SizeName } from "../engine/choices.js";
import { formatBytes } from "./charts.js";
import { $, fmtInt, num, setInfo } from "./dom.js";

export function describeModel(m: ModelInfo): string {
  const kinds = new Map<string, number>();
  for (const k of m.layerKinds) kinds.set(k, (kinds.get(k) ?? 0) + 1);
  const layers = [...kinds].map(([k, n]) => `${n}× ${k}`).join(" + ");
  return `${m.label} — ${m.modelType}, ${layers}, width ${m.width}, vocabulary ${m.vocab}, ${fmtInt(m.parameters)} parameters (${formatBytes(m.parameterBytes)})`;
}

export function wireModelPanel(pg: Playground): { createFresh: () => Promise<void> } {
  const fresh = $<HTMLButtonElement>("fresh");
  pg.busy.register([fresh]);

  const adopt = (m: ModelInfo) => {
    pg.model = m;
    setInfo("model-info", describeModel(m));
  };

  const createFresh = () =>
    pg.busy.run("fresh", async () => {
      setInfo("model-info", "building…");
      try {
        adopt(
          await pg.client.request<ModelInfo>({
            kind: "fresh",
            arch: $<HTMLSelectElement>("arch").value as ArchName,
            size: $<HTMLSelectElement>("size").value as SizeName,
            vocab: num("vocab"),
            seed: num("seed"),
          }),
        );
      } catch (e) {
        setInfo("model-info", (e as Error).message, true);
      }
    });
  fresh.onclick = () => void createFresh();

  const load = (files: File[]) =>
    pg.busy.run("load", async () => {
      const config = files.find((f) => f.name.endsWith(".json"));
      const weights = files.find((f) => f.name.endsWith(".safetensors"));
      if (!config || !weights) {
        setInfo("model-info", "give both files: config.json and model.safetensors", true);
        return;
      }
      setInfo("model-info", `reading ${weights.name} (${formatBytes(weights.size)})…`);
      try {
        const buffer = await weights.arrayBuffer();
        const m = await pg.client.request<ModelInfo>(
          { kind: "load", configName: config.name, configText: await config.text(), weightsName: weights.name, weights: buffer },
          undefined,
          [buffer],
        );
        adopt(m);
      } catch (e) {
        setInfo("model-info", (e as Error).message, true);
      }
    });

  const input = $<HTMLInputElement>("files");
  input.onchange = () => {
    if (input.files && input.files.length) void load(Array.from(input.files));
    input.value = "";
  };
  const drop = $("drop");
  drop.ondragover = (e) => {
    e.preventDefault();
    drop.classList.add("over");
  };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (pg.busy.running) return;
    const files = Array.from(e.dataTransfer?.files ?? []);
    if (files.length) void load(files);
  };
  return { createFresh };
}
