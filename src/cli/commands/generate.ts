/**
 * `seqlab generate --model DIR --prompt TEXT`: continue a prompt, writing each piece of text to
 * stdout the moment its tokens complete it, then one stats line on stderr (prefill and decode
 * speed, KV-cache or recurrent-state bytes).
 */
import { SeqlabError } from "../../util/errors.js";
import { intFlag } from "../args.js";
import { BACKEND_OPTIONS, KV_CACHE_OPTION, LOAD_OPTIONS, type Command } from "../command.js";
import { checkTokenizerFits, exitWhenStdoutCloses, formatStats, loadForInference, modelDir, MODEL_OPTION, SAMPLING_OPTIONS, samplingFlags, tokenizerOf } from "../inference.js";
import { DecodeSession } from "../../generate/session.js";
import { TextStreamer } from "../../generate/stream.js";

export const generateCommand: Command = {
  name: "generate",
  summary: "continue a prompt, streaming the text as it is generated",
  usage: "--model DIR|hf:owner/name --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--dtype D] [--backend NAME]",
  options: {
    ...MODEL_OPTION,
    prompt: { type: "string", help: "the text to continue" },
    ...SAMPLING_OPTIONS,
    ...LOAD_OPTIONS,
    ...BACKEND_OPTIONS,
    ...KV_CACHE_OPTION,
  },
  async run(v, pos) {
    const c = "generate";
    if (pos.length > 0) throw new SeqlabError(`${c}: unexpected argument "${pos[0]}" (the prompt goes in --prompt)`);
    if (typeof v.prompt !== "string") throw new SeqlabError(`${c}: --prompt is required`);
    const maxNewTokens = intFlag(c, "max-new-tokens", v["max-new-tokens"], 64, 0, 1 << 24);
    const sampling = samplingFlags(c, v);
    const dir = await modelDir(c, v);
    const tok = tokenizerOf(dir);
    const { model } = await loadForInference(c, v, dir);
    checkTokenizerFits(tok, model);
    const prompt = tok.encode(v.prompt);
    if (prompt.length === 0) throw new SeqlabError(`${c}: the prompt encodes to no tokens`);
    exitWhenStdoutCloses();
    const session = new DecodeSession(model, prompt.length + Math.min(maxNewTokens, 1024)); // KV caches grow past this
    const streamer = new TextStreamer(tok, prompt);
    try {
      const reply = await session.generate(prompt, {
        ...sampling,
        maxNewTokens,
        stopTokens: v["ignore-eos"] ? [] : [...tok.eosIds],
        onToken: (t) => process.stdout.write(streamer.push(t)),
      });
      process.stdout.write(streamer.flush() + "\n");
      console.error(`${c}: ${formatStats(reply.stats)}`);
    } finally {
      session.dispose();
    }
    return 0;
  },
};
