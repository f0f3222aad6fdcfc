// TEMPORARY until the cpu backend lands on main
import type { Backend } from "../../../src/backend/backend.js";
import { SeqlabError } from "../../../src/util/errors.js";
export async function startCpuBackend(threads: number): Promise<Backend & { threads: number }> {
  throw new SeqlabError(`cpu backend (${threads} threads) is not in this build yet`);
}
