/**
 * The CPU peer of `seqlab bench cpu`: llama.cpp through node-llama-cpp (pinned 3.21.1, its
 * prebuilt CPU binary; never built from source), on the GGUF files seqlab exports from the same
 * weights. Token ids go in directly (no tokenizer), and a run is timed the way seqlab's
 * generate() times itself: prefill = from the call until the first greedy token is known,
 * decode = the time per further token, each one a single-token evaluation plus greedy sampling.
 *
 * Settings that could penalise llama.cpp are chosen for it: as many threads as seqlab gets and
 * no more (node-llama-cpp otherwise allows up to 4), a batch large enough that a prompt is one
 * call, and flash attention left to llama.cpp ("auto").
 */
import { SeqlabError } from "../util/errors.js";

/** What a timed run returns (both engines). */
export interface GenerationTiming {
  promptTokens: number;
  /** greedy tokens after the prompt */
  tokens: number[];
  prefillSeconds: number;
  /** seconds for tokens.length - 1 decode steps */
  decodeSeconds: number;
  /** seconds between consecutive tokens: each one decode step */
  stepSeconds: number[];
}

export interface LlamaCppInfo {
  nodeLlamaCpp: string;
  llamaCppRelease: string;
  buildType: string;
  systemInfo: string;
}

export interface LlamaCppSettings {
  threads: number;
  useMmap: boolean;
  batchSize: number;
  flashAttention: "auto" | boolean;
}

/* Minimal structural types of the parts of node-llama-cpp used here (it is an optional dev dependency). */
interface NlcSequence {
  clearHistory(): Promise<void>;
  evaluate(tokens: number[], options?: { temperature?: number }): AsyncGenerator<number, void, void | number | number[]>;
}
interface NlcContext {
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
  readonly flashAttention: boolean | "auto";
  readonly batchSize: number;
  readonly contextSize: number;
}
interface NlcModel {
  createContext(o: Record<string, unknown>): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  loadModel(o: { modelPath: string; useMmap?: boolean }): Promise<NlcModel>;
  dispose(): Promise<void>;
  readonly llamaCppRelease: { repo: string; release: string };
  readonly buildType: string;
  readonly systemInfo: string;
}

export class LlamaCpp {
  private constructor(
    private readonly llama: NlcLlama,
    readonly info: LlamaCppInfo,
    readonly threads: number,
  ) {}

  /** The prebuilt CPU binary with `threads` threads, or a SeqlabError saying why not. */
  static async create(threads: number): Promise<LlamaCpp> {
    let mod: { getLlama(o: Record<string, unknown>): Promise<NlcLlama> };
    try {
      mod = (await import("node-llama-cpp")) as unknown as typeof mod;
    } catch {
      throw new SeqlabError("bench cpu: the llama.cpp peer needs the npm package node-llama-cpp@3.21.1 (a devDependency: run npm install)");
    }
    let llama: NlcLlama;
    try {
      llama = await mod.getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, maxThreads: threads, logLevel: "error" });
    } catch (e) {
      throw new SeqlabError(`bench cpu: node-llama-cpp found no usable prebuilt CPU binary: ${String((e as Error).message ?? e).split("\n")[0]}`);
    }
    const info: LlamaCppInfo = {
      nodeLlamaCpp: await packageVersion(),
      llamaCppRelease: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`,
      buildType: llama.buildType,
      systemInfo: llama.systemInfo,
    };
    return new LlamaCpp(llama, info, threads);
  }

  /** A GGUF model with one context of `contextSize` tokens. */
  async load(file: string, contextSize: number, batchSize: number): Promise<LlamaCppModel> {
    // read into memory like seqlab's loader, instead of mapping the file (pages of a mapped
    // file can be reclaimed under memory pressure and faulted back in mid-benchmark)
    const model = await this.llama.loadModel({ modelPath: file, useMmap: false });
    try {
      const context = await model.createContext({
        contextSize,
        batchSize,
        sequences: 1,
        threads: { ideal: this.threads, min: this.threads },
        flashAttention: "auto",
      });
      const settings: LlamaCppSettings = { threads: this.threads, useMmap: false, batchSize: context.batchSize, flashAttention: context.flashAttention };
      return new LlamaCppModel(model, context, settings);
    } catch (e) {
      await model.dispose();
      throw e;
    }
  }

  async dispose(): Promise<void> {
    await this.llama.dispose();
  }
}

export class LlamaCppModel {
  private readonly sequence: NlcSequence;

  constructor(
    private readonly model: NlcModel,
    private readonly context: NlcContext,
    readonly settings: LlamaCppSettings,
  ) {
    this.sequence = context.getSequence();
  }

  /** Prefill `prompt` from an empty state, then decode greedily until `newTokens` tokens exist. */
  async generate(prompt: number[], newTokens: number): Promise<GenerationTiming> {
    await this.sequence.clearHistory();
    const tokens: number[] = [];
    const stamps: number[] = [];
    const t0 = performance.now();
    for await (const t of this.sequence.evaluate(prompt, { temperature: 0 })) {
      stamps.push(performance.now());
      tokens.push(t);
      if (tokens.length >= newTokens) break;
    }
    return timingFrom(prompt.length, tokens, t0, stamps);
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}

/** Timing of a run from its start and the moment each token was known. */
export function timingFrom(promptTokens: number, tokens: number[], t0: number, stamps: number[]): GenerationTiming {
  const last = stamps.length ? stamps[stamps.length - 1] : t0;
  return {
    promptTokens,
    tokens,
    prefillSeconds: ((stamps[0] ?? t0) - t0) / 1e3,
    decodeSeconds: (last - (stamps[0] ?? t0)) / 1e3,
    stepSeconds: stamps.slice(1).map((t, i) => (t - stamps[i]) / 1e3),
  };
}

/** node-llama-cpp's version, from the package.json above its entry point (its exports hide the file). */
async function packageVersion(): Promise<string> {
  try {
    const { createRequire } = await import("node:module");
    const fs = await import("node:fs");
    const path = await import("node:path");
    let dir = path.dirname(createRequire(import.meta.url).resolve("node-llama-cpp"));
    for (let up = 0; up < 4; up++, dir = path.dirname(dir)) {
      const file = path.join(dir, "package.json");
      if (!fs.existsSync(file)) continue;
      const pkg = JSON.parse(fs.readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "node-llama-cpp") return pkg.version ?? "unknown";
    }
  } catch {
    // fall through
  }
  return "unknown";
}
