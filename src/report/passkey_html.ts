/**
 * The passkey report: one self-contained HTML file (inline CSS and SVG, no scripts, no network)
 * with the accuracy heatmap (context length across, needle depth down), the same numbers as a
 * table, and every trial's expected and generated answer.
 */
import type { PasskeyCell, PasskeyGrid } from "../experiments/passkey_probe.js";

export interface PasskeyReportInfo {
  model: string;
  modelType: string;
  parameters: number;
  backend: string;
  seed: number;
  date: string;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Accuracy 0 -> red, 0.5 -> amber, 1 -> green. */
function color(acc: number): string {
  const hue = Math.round(120 * acc);
  return `hsl(${hue}, 70%, ${45 + 10 * (1 - Math.abs(acc - 0.5) * 2)}%)`;
}

const pct = (c: PasskeyCell) => `${Math.round((100 * c.correct) / c.trials)}%`;

function cellAt(g: PasskeyGrid, length: number, depth: number): PasskeyCell {
  return g.cells.find((c) => c.length === length && c.depth === depth)!;
}

function heatmap(g: PasskeyGrid): string {
  const cw = 72;
  const ch = 36;
  const left = 70;
  const top = 30;
  const w = Math.max(left + cw * g.lengths.length + 20, 240);
  const h = top + ch * g.depths.length + 50;
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" role="img" aria-label="passkey accuracy heatmap">`];
  g.depths.forEach((d, r) => {
    parts.push(`<text x="${left - 8}" y="${top + r * ch + ch / 2 + 4}" text-anchor="end">${d}</text>`);
    g.lengths.forEach((l, k) => {
      const c = cellAt(g, l, d);
      const acc = c.correct / c.trials;
      const x = left + k * cw;
      const y = top + r * ch;
      parts.push(
        `<rect x="${x}" y="${y}" width="${cw - 2}" height="${ch - 2}" fill="${color(acc)}"><title>length ${l}, depth ${d}: ${c.correct}/${c.trials}</title></rect>`,
        `<text x="${x + cw / 2 - 1}" y="${y + ch / 2 + 4}" text-anchor="middle" class="v">${pct(c)}</text>`,
      );
    });
  });
  g.lengths.forEach((l, k) => parts.push(`<text x="${left + k * cw + cw / 2 - 1}" y="${top + ch * g.depths.length + 16}" text-anchor="middle">${l}</text>`));
  parts.push(
    `<text x="${left + (cw * g.lengths.length) / 2}" y="${top + ch * g.depths.length + 38}" text-anchor="middle" class="axis">context length (tokens)</text>`,
    `<text x="14" y="${top + (ch * g.depths.length) / 2}" text-anchor="middle" class="axis" transform="rotate(-90 14 ${top + (ch * g.depths.length) / 2})">needle depth</text>`,
    "</svg>",
  );
  return parts.join("\n");
}

function table(g: PasskeyGrid): string {
  const head = `<tr><th>depth \\ length</th>${g.lengths.map((l) => `<th>${l}</th>`).join("")}</tr>`;
  const rows = g.depths.map((d) => `<tr><th>${d}</th>${g.lengths.map((l) => {
    const c = cellAt(g, l, d);
    return `<td>${c.correct}/${c.trials}</td>`;
  }).join("")}</tr>`);
  return `<table>${head}${rows.join("")}</table>`;
}

function trials(g: PasskeyGrid): string {
  const rows = g.cells.flatMap((c) =>
    c.answers.map((a, i) => `<tr><td>${c.length}</td><td>${c.depth}</td><td>${c.promptTokens[i]}</td><td>${esc(a.expected)}</td><td>${a.got === null ? "<em>none</em>" : esc(a.got)}</td><td>${a.got === a.expected ? "yes" : "no"}</td></tr>`),
  );
  return `<details><summary>every trial</summary><table><tr><th>length</th><th>depth</th><th>prompt tokens</th><th>passkey</th><th>answer</th><th>right</th></tr>${rows.join("")}</table></details>`;
}

export function passkeyReportHtml(g: PasskeyGrid, info: PasskeyReportInfo): string {
  const total = g.cells.reduce((n, c) => n + c.correct, 0);
  const trialsCount = g.cells.reduce((n, c) => n + c.trials, 0);
  const how =
    g.mode === "text"
      ? "llama.cpp's examples/passkey prompt (junk sentences around &ldquo;The pass key is N. Remember it. N is the pass key.&rdquo;), greedy decoding"
      : "seqlab's token-level passkey task (KEY d1..d5 in filler, QUERY at the end), greedy decoding of five digits";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>passkey: ${esc(info.model)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
svg text { font: 12px system-ui, sans-serif; fill: #222; } svg text.v { font-weight: 600; fill: #111; } svg text.axis { fill: #555; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
.meta { color: #555; }
</style></head><body>
<h1>Passkey retrieval: ${esc(info.model)}</h1>
<p class="meta">${esc(info.modelType)}, ${info.parameters.toLocaleString("en-US")} parameters; backend ${esc(info.backend)}; ${how}; seed ${info.seed}; ${esc(info.date)}</p>
<p><strong>${total}/${trialsCount}</strong> trials right overall. Each cell: the share of trials whose greedy answer is the passkey.</p>
${heatmap(g)}
${table(g)}
${trials(g)}
</body></html>
`;
}
