/**
 * WGSL helpers shared by the kernels. GPU builtins are allowed to be loose (Vulkan only bounds
 * sin/cos to 2^-11 absolute error on [-pi, pi], tanh may overflow, fast-math may drop
 * infinities), so the functions whose accuracy parity depends on are written out here:
 * erfc to 1.2e-7 relative (gelu), a tanh and a log1p that keep relative precision near zero,
 * sin/cos with Cody-Waite range reduction (rotary angles reach 1e5 radians), and bit-exact
 * f16/bf16 conversions with round-to-nearest-even (WGSL storage has no 16-bit types without
 * shader-f16, so half tensors are u16 pairs packed into u32 words, element 0 in the low half).
 */

/** Linear thread index over a grid1d() grid of `wg`-thread workgroups. */
export const LINEAR_INDEX = (wg: number) => /* wgsl */ `
fn linearIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.y * nwg.x * ${wg}u + gid.x; }
`;

/**
 * Infinities, signed like \`sign\`. WGSL rejects infinite constant expressions, so the bit
 * pattern is made to depend on a runtime value.
 */
export const INF = /* wgsl */ `
fn infinity_(sign: f32) -> f32 {
  let b = bitcast<u32>(sign);
  return bitcast<f32>(0x7f800000u | (b & 0x80000000u));
}
`;

export const MATH = INF + /* wgsl */ `
// the scans' decays are exp2(step * A LOG2E): the hardware exp2, shared by forward, backward and step
const LOG2E: f32 = 1.4426950408889634;
// exp to ~1 ulp (the builtin may lose |x| ulps): 2^k exp(r) with a two-part ln 2 (cephes expf)
fn exp_(x: f32) -> f32 {
  if (x > 88.72283) { return infinity_(x); }
  if (x < -103.97208) { return 0.0; }
  let k = round(x * 1.44269504088896341);
  let r = (x - k * 0.693359375) + k * 2.12194440e-4;
  let p = ((((1.9875691500e-4 * r + 1.3981999507e-3) * r + 8.3334519073e-3) * r + 4.1665795894e-2) * r + 1.6666665459e-1) * r + 5.0000001201e-1;
  return ldexp(p * r * r + r + 1.0, i32(k));
}

fn sigmoid_(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}

fn tanh_(x: f32) -> f32 {
  let a = abs(x);
  var r: f32;
  if (a < 0.3) {
    // Taylor series: the next term is below 6e-8 relative at 0.3
    let a2 = a * a;
    r = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))));
  } else {
    let e = exp(-2.0 * a);
    r = (1.0 - e) / (1.0 + e);
  }
  return select(r, -r, x < 0.0);
}

// erfc with fractional error below 1.2e-7 everywhere (Chebyshev fit, Numerical Recipes 6.2)
fn erfc_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
          t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let r = t * exp(-z * z + p);
  return select(r, 2.0 - r, x < 0.0);
}

// log(1 + u) for u in [0, 1] as 2 atanh(u / (2 + u)): w <= 1/3, so eight terms reach 1e-8
fn log1p01_(u: f32) -> f32 {
  let w = u / (2.0 + u);
  let w2 = w * w;
  return 2.0 * w * (1.0 + w2 * (1.0 / 3.0 + w2 * (1.0 / 5.0 + w2 * (1.0 / 7.0 + w2 * (1.0 / 9.0 +
         w2 * (1.0 / 11.0 + w2 * (1.0 / 13.0 + w2 * (1.0 / 15.0))))))));
}

// softplus as PyTorch computes it: linear above 20
fn softplus_(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  return max(x, 0.0) + log1p01_(exp(-abs(x)));
}

const SQRT1_2: f32 = 0.70710678118654752;
const INV_SQRT_2PI: f32 = 0.39894228040143268;
const SQRT_2_OVER_PI: f32 = 0.79788456080286536;

fn gelu_(x: f32) -> f32 { return 0.5 * x * erfc_(-x * SQRT1_2); }
fn gelu_grad_(x: f32) -> f32 { return 0.5 * erfc_(-x * SQRT1_2) + x * exp(-0.5 * x * x) * INV_SQRT_2PI; }
fn gelu_tanh_(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))); }
fn gelu_tanh_grad_(x: f32) -> f32 {
  let t = tanh_(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
  let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}
`;

/** (sin a, cos a) for |a| up to ~1e5 with ~1e-7 absolute error. */
export const SINCOS = /* wgsl */ `
fn sincos_(a: f32) -> vec2<f32> {
  // reduce by pi/2 in three parts; P1 has 8 significant bits, so k * P1 is exact for |k| < 2^16
  let k = round(a * 0.63661977236758134);
  let r = ((a - k * 1.5703125) - k * 4.837512969970703125e-4) - k * 7.549789954891882e-8;
  let r2 = r * r;
  let s = r + r * r2 * (-1.6666654611e-1 + r2 * (8.3321608736e-3 + r2 * (-1.9515295891e-4)));
  let c = 1.0 - 0.5 * r2 + r2 * r2 * (4.166664568298827e-2 + r2 * (-1.388731625493765e-3 + r2 * 2.443315711809948e-5));
  let q = ((i32(k) % 4) + 4) % 4;
  if (q == 0) { return vec2<f32>(s, c); }
  if (q == 1) { return vec2<f32>(c, -s); }
  if (q == 2) { return vec2<f32>(-s, -c); }
  return vec2<f32>(-c, s);
}
`;

/** Bit-exact half conversions (integer arithmetic, round-to-nearest-even) as util/half.ts. */
export const HALF = /* wgsl */ `
fn f16_bits_to_f32_bits(h: u32) -> u32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    if (m == 0u) { return s; }
    // subnormal: normalise the mantissa
    var mm = m;
    var ee = 113u;
    loop {
      if ((mm & 0x400u) != 0u) { break; }
      mm = mm << 1u;
      ee = ee - 1u;
    }
    return s | (ee << 23u) | ((mm & 0x3ffu) << 13u);
  }
  if (e == 31u) { return select(s | 0x7f800000u, 0x7fc00000u, m != 0u); } // NaN as JS stores it
  return s | ((e + 112u) << 23u) | (m << 13u);
}

fn f32_bits_to_f16_bits(x: u32) -> u32 {
  let sign = (x >> 16u) & 0x8000u;
  let ex = (x >> 23u) & 0xffu;
  var mant = x & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = i32(ex) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    var half = mant >> shift;
    let rem = mant & ((1u << shift) - 1u);
    let mid = 1u << (shift - 1u);
    if (rem > mid || (rem == mid && (half & 1u) != 0u)) { half = half + 1u; }
    return sign | half;
  }
  var half = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u) != 0u)) { half = half + 1u; }
  return sign | half;
}

fn bf16_bits_to_f32_bits(h: u32) -> u32 {
  if ((h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0u) { return 0x7fc00000u; } // NaN as JS stores it
  return h << 16u;
}

fn f32_bits_to_bf16_bits(x: u32) -> u32 {
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu) != 0u) { return ((x >> 16u) | 0x40u) & 0xffffu; }
  let rounding = 0x7fffu + ((x >> 16u) & 1u);
  return ((x + rounding) >> 16u) & 0xffffu;
}
`;

/** A float literal WGSL accepts (always with a decimal point or exponent). */
export function f32Lit(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`internal: non-finite WGSL literal ${v}`);
  const s = String(Math.fround(v));
  return /[.eE]/.test(s) ? s : s + ".0";
}
