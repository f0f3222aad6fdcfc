/** `seqlab verify <model-dir>` */
import { SeqlabError } from "../../util/errors.js";
import { LOAD_OPTIONS, ORACLE_BACKEND_OPTIONS, loadFlags, cpuFlags, type Command } from "../command.js";
import { verify } from "../verify.js";

export const verifyCommand: Command = {
  name: "verify",
  summary: "check a model directory against its reference logits, hidden states, loss, gradients and generation",
  usage: "<model-dir> [--reference FILE] [--backend NAME] [--dtype f32|f16|bf16|auto]",
  options: { reference: { type: "string", help: "reference file (default <model-dir>/reference.safetensors)" }, ...LOAD_OPTIONS, ...ORACLE_BACKEND_OPTIONS },
  async run(v, pos) {
    if (pos.length !== 1) throw new SeqlabError("verify: give exactly one model directory");
    const ok = await verify(
      pos[0],
      { reference: v.reference as string | undefined, backend: v.backend as string, ...cpuFlags("verify", v), ...loadFlags("verify", v, "f32") },
      (l) => console.log(l),
    );
    return ok ? 0 : 1;
  },
};
