/** Panel 2: generation token by token, with live latency and state-memory charts. */
import type { Playground } from "../main.js";
import type { EngineEvent, GenerateResult } from "../protocol.js";
import { formatBytes, RunningMedian } from "./charts.js";
import { $, num, setInfo } from "./dom.js";

/** Token ids typed as numbers, or any other text as its UTF-8 bytes (needs a vocabulary of 256). */
export function parsePrompt(text: string, vocab: number): number[] {
  const t = text.trim();
  if (t === "") throw new Error("the prompt is empty: give token ids or text");
  if (/^[\d\s,]+$/.test(t)) return t.split(/[\s,]+/).filter(Boolean).map(Number);
  if (vocab < 256) throw new Error(`text prompts are bytes and need a vocabulary of 256, this model has ${vocab}: give token ids`);
  return [...new TextEncoder().encode(text)];
}

function renderTokens(el: HTMLElement, prompt: number[], generated: number[]): void {
  el.innerHTML = "";
  const p = document.createElement("span");
  p.className = "p";
  p.textContent = prompt.join(" ") + " │ ";
  el.append(p, generated.join(" "));
  el.scrollTop = el.scrollHeight;
}

export function wireGeneratePanel(pg: Playground): void {
  const start = $<HTMLButtonElement>("generate");
  const stop = $<HTMLButtonElement>("stop");
  pg.busy.register([start], [stop]);
  stop.onclick = () => pg.client.stop();
  $("clear-gen").onclick = () => {
    pg.charts.latency.clear();
    pg.charts.memory.clear();
  };

  start.onclick = () =>
    void pg.busy.run("generate", async () => {
      const model = pg.model;
      if (!model) return setInfo("gen-stats", "no model yet", true);
      let prompt: number[];
      try {
        prompt = parsePrompt($<HTMLInputElement>("prompt").value, model.vocab);
      } catch (e) {
        return setInfo("gen-stats", (e as Error).message, true);
      }
      const label = model.label.replace(/, seed \d+$/, "");
      const lat = pg.charts.latency.addSeries(label);
      const latDots = pg.charts.latency.addDots(lat);
      const median = new RunningMedian(9);
      const hasAttention = model.layerKinds.includes("attention");
      const hasRecurrent = model.layerKinds.some((k) => k !== "attention");
      const kv = hasAttention ? pg.charts.memory.addSeries(`${label}: KV cache`) : -1;
      const rec = hasRecurrent ? pg.charts.memory.addSeries(`${label}: recurrent`, true, hasAttention) : -1;
      const generated: number[] = [];
      const tokensEl = $("tokens");
      renderTokens(tokensEl, prompt, generated);
      setInfo("gen-stats", "prefill…");
      const onEvent = (e: EngineEvent) => {
        if (e.type === "prefill") {
          setInfo("gen-stats", `prefill: ${e.tokens} tokens in ${e.ms.toFixed(1)} ms`);
          if (kv >= 0) pg.charts.memory.push(kv, { x: e.tokens, y: e.kvCache });
          if (rec >= 0) pg.charts.memory.push(rec, { x: e.tokens, y: e.recurrent });
        } else if (e.type === "token") {
          generated.push(e.token);
          renderTokens(tokensEl, prompt, generated);
          pg.charts.latency.push(latDots, { x: e.position, y: e.ms });
          pg.charts.latency.push(lat, { x: e.position, y: median.push(e.ms) });
          if (kv >= 0) pg.charts.memory.push(kv, { x: e.position, y: e.kvCache });
          if (rec >= 0) pg.charts.memory.push(rec, { x: e.position, y: e.recurrent });
          setInfo(
            "gen-stats",
            `token ${e.index + 1}: ${e.ms.toFixed(2)} ms at position ${e.position} · KV cache ${formatBytes(e.kvCache)} · recurrent state ${formatBytes(e.recurrent)}`,
          );
        }
      };
      try {
        const r = await pg.client.request<GenerateResult>(
          { kind: "generate", prompt, maxNewTokens: num("new-tokens"), temperature: num("temperature"), topK: 0, seed: num("sample-seed") },
          onEvent,
        );
        pg.generations.push(r);
        setInfo(
          "gen-stats",
          `${r.stopped ? "stopped after" : "done:"} ${r.tokens.length - prompt.length} tokens · prefill ${r.prefillMs.toFixed(1)} ms · decode ${r.decodeTokensPerSecond.toFixed(1)} tokens/s`,
        );
      } catch (e) {
        setInfo("gen-stats", (e as Error).message, true);
      }
    });
}
