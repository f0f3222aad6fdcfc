/**
 * The worker's program, as source text: a worker is started from this string (Node: eval
 * worker; browsers: a Blob URL), so it needs no file of its own in bundles. It instantiates the
 * kernel module over the shared memory, then loops: wait for the job sequence number to change
 * (spinning briefly first, since jobs come in bursts), then claim and run shares of the job
 * until none is left (control.ts).
 * Offsets match control.ts.
 */
import { CTRL } from "./control.js";

export const WORKER_SOURCE = `
"use strict";
const C = ${JSON.stringify(CTRL)};
const SPIN = 20000;
const SHARE_MASK = (1 << C.SHARE_BITS) - 1;
const isNode = typeof require === "function";
const port = isNode ? require("node:worker_threads").parentPort : self;
function onInit(msg) {
  const { module, memory, ctrl, tid, names } = msg;
  let inst;
  try {
    inst = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error("wasm kernel aborted"); } } });
  } catch (e) {
    port.postMessage({ type: "error", tid, message: String(e && e.message || e) });
    return;
  }
  const fns = names.map((n) => inst.exports[n]);
  const ctl = new Int32Array(memory.buffer, ctrl, C.INTS);
  const a = new Float64Array(memory.buffer, ctrl + C.ARGS_BYTE, C.MAX_ARGS);
  // read the sequence number before announcing readiness: the first job may follow at once
  let seen = Atomics.load(ctl, C.SEQ);
  port.postMessage({ type: "ready", tid });
  for (;;) {
    let seq = Atomics.load(ctl, C.SEQ);
    for (let i = 0; seq === seen && i < SPIN; i++) seq = Atomics.load(ctl, C.SEQ);
    while (seq === seen) {
      Atomics.wait(ctl, C.SEQ, seen);
      seq = Atomics.load(ctl, C.SEQ);
    }
    seen = seq;
    if (ctl[C.FN] === C.EXIT) break;
    // claim shares of whatever job is open; fn and the arguments are read only after a claim
    // succeeds, and the main thread does not reuse them until every claimed share is done
    for (;;) {
      const w = Atomics.load(ctl, C.CLAIM);
      const share = w & SHARE_MASK;
      const nth = w >>> C.SHARE_BITS;
      if (share >= nth) break;
      if (Atomics.compareExchange(ctl, C.CLAIM, w, w + 1) !== w) continue;
      const fn = ctl[C.FN];
      try {
        fns[fn](share, nth, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15],
          a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24], a[25], a[26], a[27], a[28], a[29], a[30], a[31]);
      } catch (e) {
        Atomics.store(ctl, C.ERROR, share + 1);
        port.postMessage({ type: "error", tid, message: names[fn] + ": " + String(e && e.message || e) });
      }
      if (Atomics.add(ctl, C.DONE, 1) + 1 === nth) Atomics.notify(ctl, C.DONE);
    }
  }
  port.postMessage({ type: "exit", tid });
  if (isNode) port.close();
  else self.close();
}
if (isNode) port.once("message", onInit);
else self.onmessage = (e) => { self.onmessage = null; onInit(e.data); };
`;
