/**
 * Judging the article's claims from the measured numbers. Each verdict states the thresholds it
 * used and the numbers it saw; nothing is tuned to come out: a claim that the numbers do not
 * support is reported as not reproduced, and one whose measurements are missing as not measured.
 */
import type { ClaimResult, RecallRun, ShowdownResults, Verdict } from "./results.js";
import { fitWindow, type ScalingSeries } from "./scaling.js";

type Partial = Pick<ShowdownResults, "scaling" | "decode" | "recall">;

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");
const pct = (x: number | undefined) => (x === undefined ? "n/a" : `${(100 * x).toFixed(1)}%`);

function verdict(measured: boolean, ok: boolean): Verdict {
  return !measured ? "not measured" : ok ? "reproduced" : "not reproduced";
}

const series = (r: Partial, id: string): ScalingSeries | undefined => r.scaling.find((s) => s.arch === id);

/** Where a slope was fitted, and how much of the time there the fixed cost can be. */
function fitRange(s: ScalingSeries): string {
  const w = fitWindow(s.points);
  const share = s.fixedCostShare === undefined ? "" : `; the fixed cost at most ${pct(s.fixedCostShare)} of it`;
  return w.length ? `fit over T = ${w[0].T}..${w.at(-1)!.T}${share}` : "no points";
}
const LINEAR = ["mamba", "mamba2", "rwkv"];

function claim1(r: Partial): ClaimResult {
  const naive = series(r, "attention-naive");
  const tiled = series(r, "attention-tiled");
  const e: string[] = [];
  let ok = true;
  if (naive && tiled) {
    e.push(`time ~ T^k: naive k = ${f2(naive.timeSlope)}, tiled k = ${f2(tiled.timeSlope)} (threshold k >= 1.6 over the largest lengths)`);
    e.push(`naive: ${fitRange(naive)}; tiled: ${fitRange(tiled)}`);
    e.push(`peak memory ~ T^k: naive k = ${f2(naive.memorySlope)} (needs >= 1.6), tiled k = ${f2(tiled.memorySlope)} (needs <= 1.3)`);
    e.push(`naive attention stops: ${naive.stop}; tiled reaches T = ${tiled.points.at(-1)?.T}`);
    const common = naive.points.at(-1);
    const same = common && tiled.points.find((p) => p.T === common.T);
    if (common && same) e.push(`at T = ${common.T}: tiled takes ${f2(same.seconds / common.seconds)}x the naive time with ${f2(same.peakBytes / common.peakBytes)}x its memory`);
    ok = naive.timeSlope >= 1.6 && tiled.timeSlope >= 1.6 && naive.memorySlope >= 1.6 && tiled.memorySlope <= 1.3;
  }
  return { id: 1, title: "Attention costs O(T^2) compute; materialised attention needs O(T^2) memory; a tiled kernel brings memory back to O(T) without changing compute", verdict: verdict(!!(naive && tiled), ok), evidence: e };
}

function claim2(r: Partial): ClaimResult {
  const att = r.decode.find((d) => d.arch === "transformer");
  const rec = r.decode.filter((d) => LINEAR.includes(d.arch));
  const e: string[] = [];
  let ok = !!att && rec.length > 0;
  if (att) {
    e.push(`Transformer: KV cache bytes ~ position^${f2(att.bytesSlope)} (needs 0.9..1.1), decode time ~ position^${f2(att.timeSlope)} (needs >= 0.3 at the largest positions)`);
    const a = att.points[0];
    const b = att.points.at(-1)!;
    e.push(`Transformer at position ${a.position} -> ${b.position}: ${a.msPerToken.toFixed(2)} -> ${b.msPerToken.toFixed(2)} ms/token, KV cache ${a.kvCacheBytes} -> ${b.kvCacheBytes} bytes`);
    ok &&= att.bytesSlope >= 0.9 && att.bytesSlope <= 1.1 && att.timeSlope >= 0.3;
  }
  for (const d of rec) {
    const a = d.points[0];
    const b = d.points.at(-1)!;
    e.push(`${d.label}: state ${a.recurrentBytes} -> ${b.recurrentBytes} bytes, ${a.msPerToken.toFixed(2)} -> ${b.msPerToken.toFixed(2)} ms/token (time slope ${f2(d.timeSlope)}, needs <= 0.15)`);
    ok &&= a.recurrentBytes === b.recurrentBytes && b.kvCacheBytes === 0 && d.timeSlope <= 0.15;
  }
  return { id: 2, title: "Decoding with attention reads a KV cache that grows with every token; Mamba and RWKV decode from a fixed-size state", verdict: verdict(!!att && rec.length > 0, ok), evidence: e };
}

function claim3(r: Partial): ClaimResult {
  const lin = r.scaling.filter((s) => LINEAR.includes(s.arch));
  const e = lin.map((s) => `${s.label}: time ~ T^${f2(s.timeSlope)}, memory ~ T^${f2(s.memorySlope)} up to T = ${s.points.at(-1)?.T} (needs <= 1.25 each; ${fitRange(s)})`);
  const ok = lin.every((s) => s.timeSlope <= 1.25 && s.memorySlope <= 1.25);
  return { id: 3, title: "Training and prefill of Mamba and RWKV are O(T)", verdict: verdict(lin.length > 0, ok), evidence: e };
}

const acc = (runs: RecallRun[], arch: string, key: string) => runs.find((x) => x.arch === arch)?.accuracy[key];

function claim4(r: Partial): ClaimResult {
  const runs = r.recall.filter((x) => x.task === "selective-copy");
  const key = Object.keys(runs[0]?.accuracy ?? {})[0];
  const sel = key ? acc(runs, "mamba", key) : undefined;
  const lti = key ? acc(runs, "mamba-lti", key) : undefined;
  const measured = sel !== undefined && lti !== undefined;
  const e = measured ? [`selective copying (${key}): Mamba ${pct(sel)} (needs >= 90%), Mamba without selection ${pct(lti)} (needs at least 20 points lower)`] : [];
  return { id: 4, title: "Selection (input-dependent dt, B, C) lets Mamba solve selective copying, which a time-invariant SSM cannot", verdict: verdict(measured, measured && sel! >= 0.9 && lti! <= sel! - 0.2), evidence: e };
}

/** passkey accuracy at one length, averaged over depths */
function passkeyAt(run: RecallRun | undefined, L: number): number | undefined {
  if (!run) return undefined;
  const v = Object.entries(run.accuracy).filter(([k]) => k.startsWith(`L${L}_`)).map(([, x]) => x);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
}

/** One place where pure Mamba's recall was compared with the Transformer's (and the hybrid's). */
interface RecallGap {
  where: string;
  transformer: number;
  mamba: number;
  hybrid: number | undefined;
  /** MQAR: what recalling nothing scores on the same examples */
  guess?: number;
}

/**
 * Pure Mamba against the Transformer where compression should show: passkey at the longest
 * trained length (every state size run), and MQAR (many key-value pairs in one state) at each
 * state size, with the hybrid trained on the same task beside them.
 */
function recallGaps(r: Partial): RecallGap[] {
  const gaps: RecallGap[] = [];
  const pk = r.recall.filter((x) => x.task === "passkey");
  const tf = pk.find((x) => x.arch === "transformer");
  if (tf) {
    const longest = Math.max(...tf.trainLengths);
    const hy = passkeyAt(pk.find((x) => x.arch === "hybrid"), longest);
    for (const m of pk.filter((x) => x.arch === "mamba")) {
      gaps.push({ where: `passkey at ${longest}, Mamba${m.variant ? ` ${m.variant}` : ""}`, transformer: passkeyAt(tf, longest)!, mamba: passkeyAt(m, longest) ?? 0, hybrid: hy });
    }
  }
  const mq = r.recall.filter((x) => x.task === "mqar");
  const mtf = mq.find((x) => x.arch === "transformer");
  if (mtf) {
    const key = Object.keys(mtf.accuracy)[0];
    const hy = mq.find((x) => x.arch === "hybrid")?.accuracy[key];
    for (const m of mq.filter((x) => x.arch === "mamba")) {
      gaps.push({ where: `MQAR ${key}, Mamba${m.variant ? ` ${m.variant}` : ""}`, transformer: mtf.accuracy[key], mamba: m.accuracy[key] ?? 0, hybrid: hy, guess: mtf.guessAccuracy?.[key] });
    }
  }
  return gaps;
}

const CLAIM5 = "Compression loses information: a pure SSM's recall degrades as the context grows or the state shrinks; attention's does not";
const CLAIM6 = "A hybrid (a few attention layers among Mamba layers, MoE FFNs) keeps most of the linear cost and recovers the recall";

function claim5(r: Partial): ClaimResult {
  const tf = r.recall.find((x) => x.task === "passkey" && x.arch === "transformer");
  const gaps = recallGaps(r);
  const e: string[] = [];
  if (!tf || gaps.length === 0) return { id: 5, title: CLAIM5, verdict: "not measured", evidence: e };
  const lengths = tf.trainLengths;
  const tfOk = lengths.every((L) => (passkeyAt(tf, L) ?? 0) >= 0.95);
  e.push(`Transformer passkey at its trained lengths: ${lengths.map((L) => `${L}: ${pct(passkeyAt(tf, L))}`).join(", ")} (needs >= 95% each)`);
  for (const m of r.recall.filter((x) => x.task === "passkey" && x.arch === "mamba")) {
    const lengths = [...new Set(Object.keys(m.accuracy).map((k) => Number(k.slice(1).split("_")[0])))]; // keys "L<length>_d<depth>"
    e.push(`Mamba${m.variant ? ` (${m.variant})` : ""} passkey by length: ${lengths.map((L) => `${L}: ${pct(passkeyAt(m, L))}`).join(", ")}`);
  }
  for (const g of gaps) e.push(`${g.where}: ${pct(g.mamba)} vs the Transformer's ${pct(g.transformer)}, ${f2(100 * (g.transformer - g.mamba))} points below (a gap needs >= 5)${g.guess === undefined ? "" : `; recalling nothing scores ${pct(g.guess)}`}`);
  const gap = gaps.some((g) => g.transformer - g.mamba >= 0.05);
  return { id: 5, title: CLAIM5, verdict: verdict(true, tfOk && gap), evidence: e };
}

function claim6(r: Partial): ClaimResult {
  const gaps = recallGaps(r).filter((g) => g.hybrid !== undefined);
  const hs = series(r, "hybrid");
  const ts = series(r, "attention-tiled");
  const e: string[] = [];
  if (gaps.length === 0) return { id: 6, title: CLAIM6, verdict: "not measured", evidence: e };
  for (const g of gaps) e.push(`${g.where}: Transformer ${pct(g.transformer)}, hybrid ${pct(g.hybrid)}, Mamba ${pct(g.mamba)}${g.guess === undefined ? "" : ` (recalling nothing: ${pct(g.guess)})`}`);
  // the hybrid must close every gap that pure Mamba showed, and there must be one to close
  const open = gaps.filter((g) => g.transformer - g.mamba >= 0.05);
  const closed = open.filter((g) => g.transformer - g.hybrid! <= 0.05);
  e.push(`Mamba gaps of >= 5 points: ${open.length}; closed by the hybrid to within 5 points of the Transformer: ${closed.length}`);
  let cheaper = true;
  if (hs && ts) {
    const T = Math.min(hs.points.at(-1)?.T ?? 0, ts.points.at(-1)?.T ?? 0);
    const hp = hs.points.find((p) => p.T === T);
    const tp = ts.points.find((p) => p.T === T);
    e.push(`forward time ~ T^k: hybrid k = ${f2(hs.timeSlope)}, Transformer k = ${f2(ts.timeSlope)}`);
    if (hp && tp) {
      e.push(`at T = ${T} the hybrid's forward takes ${f2(hp.seconds / tp.seconds)}x the Transformer's time (needs < 1)`);
      cheaper = hp.seconds < tp.seconds;
    }
  }
  const ok = open.length > 0 && closed.length === open.length && cheaper;
  return { id: 6, title: CLAIM6, verdict: verdict(true, ok), evidence: e };
}

export function judgeClaims(r: Partial): ClaimResult[] {
  return [claim1(r), claim2(r), claim3(r), claim4(r), claim5(r), claim6(r)];
}
