/**
 * Reverse-mode automatic differentiation. Each differentiable op that sees an input requiring
 * gradients attaches a GradNode to its outputs; the node holds a backward closure that maps
 * output gradients to input gradients (the op's rule, written beside its forward in ops/).
 * backward(loss) walks the nodes reachable from the loss in reverse creation order.
 *
 * Leaves (parameters) accumulate into .grad, so calling backward on several micro-batches
 * accumulates gradients; the optimizer zeroes them.
 */
import { Tensor, type GradNodeLike, setViewHook } from "../tensor/tensor.js";
import { keep } from "../tensor/scope.js";
import { backendOf, empty, full, kernelsOf } from "../backend/alloc.js";

/** Maps gradients of the outputs (null where an output got none) to gradients of the inputs. */
export type BackwardFn = (gradOutputs: (Tensor | null)[]) => (Tensor | null)[];

let sequence = 0;
let enabled = true;

export class GradNode implements GradNodeLike {
  readonly seq = sequence++;
  constructor(
    readonly op: string,
    readonly inputs: readonly Tensor[],
    readonly outputs: readonly Tensor[],
    readonly backward: BackwardFn,
  ) {}
}

export function isGradEnabled(): boolean {
  return enabled;
}

/** Run fn without recording (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = enabled;
  enabled = false;
  try {
    return fn();
  } finally {
    enabled = prev;
  }
}

export async function noGradAsync<T>(fn: () => Promise<T>): Promise<T> {
  const prev = enabled;
  enabled = false;
  try {
    return await fn();
  } finally {
    enabled = prev;
  }
}

/** True when an op on these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return enabled && inputs.some((t) => t?.requiresGrad);
}

/**
 * Attach a backward rule to the outputs of an op. Call only when needsGrad(inputs) holds.
 * Inputs that do not require grad receive nothing (their returned gradient is ignored).
 */
export function record(op: string, inputs: Tensor[], outputs: Tensor[], backward: BackwardFn): void {
  const node = new GradNode(op, [...inputs], [...outputs], backward); // copies: callers may reorder their arrays
  for (const o of outputs) {
    o.requiresGrad = true;
    o.node = node;
  }
}

/** Views made by reshape share storage; their gradient is the reshaped gradient. */
setViewHook((view, base) => {
  if (!needsGrad(base)) return;
  record("reshape", [base], [view], ([g]) => [g ? g.reshape(base.shape) : null]);
});

/** Add `g` into `target`'s gradient slot, taking ownership of g. */
function accumulate(slot: Map<Tensor, Tensor>, target: Tensor, g: Tensor): void {
  const prev = target.node ? slot.get(target) : target.grad;
  if (!prev) {
    if (target.node) slot.set(target, g);
    else target.grad = keep(g);
    return;
  }
  kernelsOf(prev).binaryForward("add", prev.handle, prev.handle, g.handle, prev.size, prev.size);
  g.dispose();
}

function clone(g: Tensor): Tensor {
  const c = empty(backendOf(g), g.shape, g.dtype);
  kernelsOf(g).copy2d(c.handle, g.handle, 1, g.size, g.size, 0, g.size, 0, false);
  return c;
}

function reachable(root: Tensor): GradNode[] {
  const seen = new Set<GradNode>();
  const stack: GradNode[] = [];
  if (root.node) stack.push(root.node as GradNode);
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    for (const i of n.inputs) if (i.node && !seen.has(i.node as GradNode)) stack.push(i.node as GradNode);
  }
  return [...seen].sort((a, b) => b.seq - a.seq);
}

/**
 * Backpropagate from `loss` (any shape; seeded with ones, or with `seed`). Leaves that require
 * grad accumulate into .grad.
 */
export function backward(loss: Tensor, seed?: Tensor): void {
  if (!loss.requiresGrad) throw new Error("internal: backward() on a tensor that does not require grad");
  const grads = new Map<Tensor, Tensor>();
  const start = seed ?? full(backendOf(loss), loss.shape, 1);
  if (!loss.node) {
    accumulate(grads, loss, start);
    return;
  }
  grads.set(loss, start);
  const prev = enabled;
  enabled = false; // backward rules are not themselves recorded
  try {
    for (const node of reachable(loss)) {
      const gOut = node.outputs.map((o) => grads.get(o) ?? null);
      if (gOut.every((g) => g === null)) continue;
      const gIn = node.backward(gOut);
      for (const o of node.outputs) grads.delete(o);
      for (const g of gOut) if (g && !gIn.includes(g)) g.dispose();
      const owned = new Set<Tensor>();
      node.inputs.forEach((input, i) => {
        let g = gIn[i];
        if (!g) return;
        if (!input.requiresGrad) {
          if (!owned.has(g) && !gIn.slice(i + 1).includes(g)) g.dispose();
          return;
        }
        if (owned.has(g)) g = clone(g); // one gradient returned for two inputs: give each its own
        owned.add(g);
        accumulate(grads, input, g);
      });
    }
  } finally {
    enabled = prev;
  }
}
