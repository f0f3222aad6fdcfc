/**
 * Chat templates: the Jinja template a chat model ships (tokenizer_config.json chat_template or
 * chat_template.jinja), rendered with @huggingface/jinja exactly as transformers'
 * apply_chat_template does: `messages`, `add_generation_prompt`, and the special tokens
 * (bos_token, eos_token ...) as variables. The rendered text already holds the template's special
 * tokens, so it is encoded without adding more.
 */
import { Template } from "@huggingface/jinja";
import { SeqlabError } from "../util/errors.js";
import type { Tokenizer } from "./tokenizer.js";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    text: string,
    private readonly specialTokens: Readonly<Record<string, string>>,
  ) {
    try {
      this.template = new Template(text);
    } catch (e) {
      throw new SeqlabError(`${source}: the chat template does not parse (${String((e as Error).message).split("\n")[0]})`);
    }
  }

  static of(tok: Tokenizer): ChatTemplate | null {
    return tok.chatTemplate === null ? null : new ChatTemplate(tok.source, tok.chatTemplate, tok.specialTokens);
  }

  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return this.template.render({ ...this.specialTokens, messages, add_generation_prompt: addGenerationPrompt });
    } catch (e) {
      throw new SeqlabError(`${this.source}: the chat template failed (${String((e as Error).message).split("\n")[0]})`);
    }
  }
}
