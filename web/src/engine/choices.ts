/**
 * The playground's model choices (names and labels only: the page imports this without
 * pulling the engine into its bundle).
 */
export type ArchName = "transformer" | "mamba" | "mamba2" | "rwkv7" | "hybrid";
export const ARCHS: { name: ArchName; label: string }[] = [
  { name: "transformer", label: "Transformer" },
  { name: "mamba", label: "Mamba" },
  { name: "mamba2", label: "Mamba-2" },
  { name: "rwkv7", label: "RWKV-7" },
  { name: "hybrid", label: "Hybrid (Jamba-style)" },
];

export type SizeName = "tiny" | "small" | "base";
/** width C; layers follow the presets (linear-time models stack twice the Transformer's) */
export const SIZES: Record<SizeName, { width: number; label: string }> = {
  tiny: { width: 32, label: "tiny (C=32)" },
  small: { width: 64, label: "small (C=64)" },
  base: { width: 128, label: "base (C=128)" },
};

