/**
 * `seqlab chat --model DIR`: a conversation on stdin/stdout for models with a chat template.
 * Each line on stdin is a user turn; the reply streams to stdout and ends with a newline; a stats
 * line goes to stderr. The inference state persists across turns: each turn runs only the tokens
 * the conversation gained (the template's rendering of the new turn), not the whole history (see
 * DecodeSession for when a history that re-tokenizes differently forces a re-read). `/reset`
 * starts over, `/exit` (or the end of stdin) ends. Works the same with stdin piped.
 */
import * as readline from "node:readline";
import { SeqlabError } from "../../util/errors.js";
import { intFlag } from "../args.js";
import { BACKEND_OPTIONS, KV_CACHE_OPTION, LOAD_OPTIONS, type Command } from "../command.js";
import { checkTokenizerFits, exitWhenStdoutCloses, formatStats, loadForInference, modelDir, MODEL_OPTION, SAMPLING_OPTIONS, samplingFlags, tokenizerOf } from "../inference.js";
import { ChatTemplate, type ChatMessage } from "../../io/chat_template.js";
import { DecodeSession } from "../../generate/session.js";
import { TextStreamer } from "../../generate/stream.js";

export const chatCommand: Command = {
  name: "chat",
  summary: "chat with a model that has a chat template (one user turn per line on stdin)",
  usage: "--model DIR|hf:owner/name [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--dtype D] [--backend NAME]",
  options: {
    ...MODEL_OPTION,
    system: { type: "string", help: "system message that opens the conversation" },
    ...SAMPLING_OPTIONS,
    ...LOAD_OPTIONS,
    ...BACKEND_OPTIONS,
    ...KV_CACHE_OPTION,
  },
  async run(v, pos) {
    const c = "chat";
    if (pos.length > 0) throw new SeqlabError(`${c}: unexpected argument "${pos[0]}" (type the conversation on stdin)`);
    const maxNewTokens = intFlag(c, "max-new-tokens", v["max-new-tokens"], 256, 1, 1 << 24);
    const sampling = samplingFlags(c, v);
    const dir = await modelDir(c, v);
    const tok = tokenizerOf(dir);
    const template = ChatTemplate.of(tok);
    if (!template) throw new SeqlabError(`${dir}: the model has no chat template (tokenizer_config.json chat_template or chat_template.jinja); use seqlab generate`);
    const { model } = await loadForInference(c, v, dir);
    checkTokenizerFits(tok, model);
    const opening: ChatMessage[] = typeof v.system === "string" ? [{ role: "system", content: v.system }] : [];
    let messages = [...opening];
    exitWhenStdoutCloses();
    const session = new DecodeSession(model);
    const interactive = process.stdin.isTTY === true;
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    if (interactive) process.stderr.write("> ");
    try {
      for await (const raw of rl) {
        const line = raw.trim();
        if (line === "/exit") break;
        if (line === "/reset") {
          messages = [...opening];
          session.reset();
        } else if (line !== "") {
          messages.push({ role: "user", content: line });
          const prompt = tok.encode(template.render(messages, true), { addSpecialTokens: false });
          const streamer = new TextStreamer(tok, prompt);
          const reply = await session.generate(prompt, {
            ...sampling,
            maxNewTokens,
            stopTokens: v["ignore-eos"] ? [] : [...tok.eosIds],
            onToken: (t) => process.stdout.write(streamer.push(t)),
          });
          process.stdout.write(streamer.flush() + "\n");
          const content = tok.decode(reply.stopped ? reply.tokens.slice(0, -1) : reply.tokens, { skipSpecialTokens: true });
          messages.push({ role: "assistant", content });
          console.error(`${c}: ${reply.reused} tokens of context reused; ${formatStats(reply.stats)}`);
        }
        if (interactive) process.stderr.write("> ");
      }
    } finally {
      rl.close();
      session.dispose();
    }
    return 0;
  },
};
