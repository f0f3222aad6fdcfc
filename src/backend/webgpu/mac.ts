/**
 * The vec4 multiply-add `acc += x * b` (x a scalar, b a vec4) of the register-blocked kernels, in
 * the WGSL forms that the driver may compile differently:
 *   muladd  `acc = acc + b * x`: vector times scalar, contracted to FFMA by the driver;
 *   fma     `acc = fma(vec4(x), b, acc)`: a splat and an explicit fma;
 *   scalar  four f32 accumulators acc_0 .. acc_3, each with a scalar fma.
 */
export type Mac = "muladd" | "fma" | "scalar";

const E = [0, 1, 2, 3];

/** Declares a zero accumulator. */
export function macDecl(form: Mac, acc: string): string {
  return form === "scalar" ? E.map((e) => `var ${acc}_${e} = 0.0;`).join(" ") : `var ${acc} = vec4<f32>(0.0);`;
}

/** The accumulator as a vec4 expression. */
export function macVec(form: Mac, acc: string): string {
  return form === "scalar" ? `vec4<f32>(${E.map((e) => `${acc}_${e}`).join(", ")})` : acc;
}

/** acc += x * b */
export function macStep(form: Mac, acc: string, x: string, b: string): string {
  if (form === "muladd") return `${acc} = ${acc} + ${b} * ${x};`;
  if (form === "fma") return `${acc} = fma(vec4<f32>(${x}), ${b}, ${acc});`;
  return E.map((e) => `${acc}_${e} = fma(${x}, ${b}[${e}], ${acc}_${e});`).join(" ");
}

/** acc *= s */
export function macScale(form: Mac, acc: string, s: string): string {
  return form === "scalar" ? E.map((e) => `${acc}_${e} *= ${s};`).join(" ") : `${acc} *= ${s};`;
}
