/** The text report of `seqlab bench cpu`: matmul against the peak, one line per measurement with its ratio, the greedy check. */
import { table } from "../util/format.js";
import type { CpuBenchResult } from "./cpu.js";

export function cpuBenchTable(r: CpuBenchResult): string {
  const out: string[] = [];
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  out.push(`${r.machine.cpu}, ${r.machine.cores} cores, ${r.threads} thread${r.threads === 1 ? "" : "s"}; load average ${load(r.machine.load_average_start)} at start, ${load(r.machine.load_average_end)} at end`);
  out.push(`seqlab ${r.versions.seqlab} (${r.seqlab_backend}); llama.cpp ${r.versions.llama_cpp} via node-llama-cpp ${r.versions.node_llama_cpp}; node ${r.versions.node}`);
  out.push("");
  out.push(`matmul (measured f32x4 multiply-add peak ${r.matmul.peak_gflop_s.toFixed(1)} GFLOP/s)`);
  out.push(
    table(
      ["shape", "weights", "ms", "GFLOP/s", "of peak", "GB/s"],
      r.matmul.cases.map((c) => [c.name, c.weights, (c.seconds * 1e3).toFixed(3), c.gflop_s.toFixed(1), `${(100 * c.fraction_of_peak).toFixed(0)}%`, c.gb_s.toFixed(1)]),
    ),
  );
  out.push("");
  out.push(`models (prefill: best of ${r.timing.repeats}; decode: median step, best of ${r.timing.repeats}, ${r.timing.decode_steps} steps per run)`);
  out.push(
    table(
      ["model", "weights", "measurement", "seqlab tok/s", "llama.cpp tok/s", "ratio", "seqlab GB/s", "llama.cpp GB/s", "load"],
      r.results.map((l) => [
        l.model,
        l.weights,
        l.metric === "prefill" ? `prefill T=${l.tokens}` : `decode after ${l.tokens}`,
        l.seqlab.tok_s.toFixed(1),
        l.llama_cpp.tok_s.toFixed(1),
        l.ratio.toFixed(2),
        l.seqlab.weight_gb_s?.toFixed(1) ?? "",
        l.llama_cpp.weight_gb_s?.toFixed(1) ?? "",
        l.load_average.toFixed(1),
      ]),
    ),
  );
  const busy = Math.max(r.machine.load_average_start[0], r.machine.load_average_end[0], ...r.results.map((l) => l.load_average));
  if (busy >= 0.75 * r.machine.cores) {
    out.push(`note: the load average reached ${busy.toFixed(1)} on ${r.machine.cores} cores: other processes competed for the cores, which costs llama.cpp (barrier-synchronised threads) far more than seqlab; these ratios overstate seqlab`);
  }
  out.push("");
  for (const g of r.greedy) {
    const what = `${g.model} ${g.weights}: greedy tokens after a ${g.prompt_tokens}-token prompt`;
    if (g.match) out.push(`${what}: seqlab and llama.cpp agree on all ${g.seqlab.length}`);
    else {
      const why = g.gap === undefined ? "" : `; seqlab's logits there: top minus llama.cpp's token = ${g.gap.toPrecision(3)} (${(100 * g.relative_gap!).toFixed(2)}% of their std${g.near_tie ? ": a near-tie" : ": NOT a near-tie"})`;
      out.push(`${what}: MISMATCH at new token ${g.first_mismatch} of ${g.seqlab.length}${why}`);
      out.push(`    seqlab    ${g.seqlab.join(",")}`);
      out.push(`    llama.cpp ${g.llama_cpp.join(",")}`);
    }
  }
  return out.join("\n");
}
