//! The registry of WGSL shaders: one entry per file in `shaders/`, with the template values
//! the runtime renders it with. Runtime launches and the naga tests render through the same
//! [`Shader::render`], so what naga validates is exactly what the GPU receives.

use burn::backend::wgpu::{KernelSource, SourceTemplate};
use burn::cubecl::prelude::KernelId;

/// One WGSL compute shader (entry point `main`) and the values of its `{{ name }}` placeholders.
#[derive(Debug, Clone, Copy)]
pub struct Shader {
    /// Short name, as printed by `s5 bench` and the tests.
    pub name: &'static str,
    /// Path relative to the repository root.
    pub file: &'static str,
    /// The template text, embedded at compile time.
    pub template: &'static str,
    /// Invocations per workgroup, rendered into `{{ workgroup_size }}` and used at launch.
    pub workgroup_size: u32,
    /// Other placeholder values used at runtime.
    pub values: &'static [(&'static str, &'static str)],
    /// Reads or writes f16 (`enable f16;`): needs the adapter's `shader-f16` feature (naga's
    /// `SHADER_FLOAT16` capability, HLSL shader model 6.2).
    pub f16: bool,
}

impl Shader {
    /// The template with its placeholders registered, ready for a `SourceKernel`.
    pub fn source_template(&self) -> SourceTemplate {
        let template = SourceTemplate::new(self.template)
            .register("workgroup_size", self.workgroup_size.to_string());
        self.values
            .iter()
            .fold(template, |t, (k, v)| t.register(*k, *v))
    }

    /// The WGSL text the GPU receives.
    pub fn render(&self) -> String {
        self.source_template().complete()
    }
}

/// A [`Shader`] as cubecl launches it (wrapped in a `SourceKernel`); cached by shader name.
pub struct ShaderKernel(pub Shader);

impl KernelSource for ShaderKernel {
    fn source(&self) -> SourceTemplate {
        self.0.source_template()
    }
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.0.name)
    }
    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// `pixel_stats.wgsl` with one pixel per invocation lane (any H * W).
pub const PIXEL_STATS: Shader = Shader {
    name: "pixel_stats",
    file: "shaders/pixel_stats.wgsl",
    template: include_str!("../../shaders/pixel_stats.wgsl"),
    workgroup_size: 256,
    values: &[
        ("enable", ""),
        ("lanes", "1"),
        ("float_type", "f32"),
        ("load_type", "f32"),
        ("int_type", "i32"),
        ("uint_type", "u32"),
        ("horizontal_sum", "v"),
    ],
    f16: false,
};

/// `pixel_stats.wgsl` with four adjacent pixels per invocation (H * W a multiple of 4).
pub const PIXEL_STATS_VEC4: Shader = Shader {
    name: "pixel_stats_vec4",
    values: &[
        ("enable", ""),
        ("lanes", "4"),
        ("float_type", "vec4<f32>"),
        ("load_type", "vec4<f32>"),
        ("int_type", "vec4<i32>"),
        ("uint_type", "vec4<u32>"),
        ("horizontal_sum", "v.x + v.y + v.z + v.w"),
    ],
    ..PIXEL_STATS
};

/// [`PIXEL_STATS`] reading f16 logits (computing, and writing confidence, in f32).
pub const PIXEL_STATS_F16: Shader = Shader {
    name: "pixel_stats_f16",
    values: &[
        ("enable", "enable f16;"),
        ("lanes", "1"),
        ("float_type", "f32"),
        ("load_type", "f16"),
        ("int_type", "i32"),
        ("uint_type", "u32"),
        ("horizontal_sum", "v"),
    ],
    f16: true,
    ..PIXEL_STATS
};

/// [`PIXEL_STATS_VEC4`] reading f16 logits (computing, and writing confidence, in f32).
pub const PIXEL_STATS_VEC4_F16: Shader = Shader {
    name: "pixel_stats_vec4_f16",
    values: &[
        ("enable", "enable f16;"),
        ("lanes", "4"),
        ("float_type", "vec4<f32>"),
        ("load_type", "vec4<f16>"),
        ("int_type", "vec4<i32>"),
        ("uint_type", "vec4<u32>"),
        ("horizontal_sum", "v.x + v.y + v.z + v.w"),
    ],
    f16: true,
    ..PIXEL_STATS
};

pub const PIXEL_STATS_REDUCE: Shader = Shader {
    name: "pixel_stats_reduce",
    file: "shaders/pixel_stats_reduce.wgsl",
    template: include_str!("../../shaders/pixel_stats_reduce.wgsl"),
    workgroup_size: 64,
    values: &[],
    f16: false,
};

/// The `rows` placeholder of `moe_ffn.wgsl` (rows per workgroup), as rendered.
const MOE_FFN_ROWS: &str = "8";

/// Rows per workgroup of `moe_ffn.wgsl`: its `rows` placeholder, read once from the value
/// the shader is rendered with.
pub const MOE_FFN_TILE_ROWS: usize = parse_usize(MOE_FFN_ROWS);

/// A decimal number at compile time (placeholder values are text).
const fn parse_usize(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut value = 0;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "a decimal placeholder value");
        value = value * 10 + (bytes[i] - b'0') as usize;
        i += 1;
    }
    value
}

/// `moe_ffn.wgsl`: the general kernel, one column per invocation (any widths).
pub const MOE_FFN: Shader = Shader {
    name: "moe_ffn",
    file: "shaders/moe_ffn.wgsl",
    template: include_str!("../../shaders/moe_ffn.wgsl"),
    workgroup_size: 64,
    values: &[
        ("enable", ""),
        ("storage", "f32"),
        ("rows", MOE_FFN_ROWS),
        ("tile_k", "64"),
    ],
    f16: false,
};

/// [`MOE_FFN`] on f16 operands and output (f32 accumulation).
pub const MOE_FFN_F16: Shader = Shader {
    name: "moe_ffn_f16",
    values: &[
        ("enable", "enable f16;"),
        ("storage", "f16"),
        ("rows", MOE_FFN_ROWS),
        ("tile_k", "64"),
    ],
    f16: true,
    ..MOE_FFN
};

/// Rows per workgroup of `moe_ffn_vec4.wgsl`: `TM = 8 * RM` in the shader. A tile is this many
/// rows × `8 * TX` = workgroup-size columns.
pub const MOE_FFN_VEC4_TILE_ROWS: usize = 128;

/// `moe_ffn_vec4.wgsl`: the fast path (F, C-P and P multiples of 4), 128 × 64 tiles.
pub const MOE_FFN_VEC4: Shader = Shader {
    name: "moe_ffn_vec4",
    file: "shaders/moe_ffn_vec4.wgsl",
    template: include_str!("../../shaders/moe_ffn_vec4.wgsl"),
    workgroup_size: 64,
    values: &[
        ("enable", ""),
        ("storage", "vec4<f32>"),
        ("tile_x", "8"),
        ("tile_k", "32"),
    ],
    f16: false,
};

/// [`MOE_FFN_VEC4`] on f16 operands and output (f32 tiles and accumulation).
pub const MOE_FFN_VEC4_F16: Shader = Shader {
    name: "moe_ffn_vec4_f16",
    values: &[
        ("enable", "enable f16;"),
        ("storage", "vec4<f16>"),
        ("tile_x", "8"),
        ("tile_k", "32"),
    ],
    f16: true,
    ..MOE_FFN_VEC4
};

/// `moe_ffn_vec4.wgsl` with 128 × 48 tiles, for column blocks that 48 pads less than 64
/// (e.g. ViT-S: C-P = 288, P = 96).
pub const MOE_FFN_VEC4_N48: Shader = Shader {
    name: "moe_ffn_vec4_n48",
    workgroup_size: 48,
    values: &[
        ("enable", ""),
        ("storage", "vec4<f32>"),
        ("tile_x", "6"),
        ("tile_k", "32"),
    ],
    ..MOE_FFN_VEC4
};

/// [`MOE_FFN_VEC4_N48`] on f16 operands and output.
pub const MOE_FFN_VEC4_N48_F16: Shader = Shader {
    name: "moe_ffn_vec4_n48_f16",
    workgroup_size: 48,
    values: &[
        ("enable", "enable f16;"),
        ("storage", "vec4<f16>"),
        ("tile_x", "6"),
        ("tile_k", "32"),
    ],
    f16: true,
    ..MOE_FFN_VEC4
};

/// Rows per workgroup of `moe_ffn_vec4_regs.wgsl` (`TM = 8 * RM`).
pub const MOE_FFN_VEC4_REGS_TILE_ROWS: usize = 128;

/// Columns per workgroup of `moe_ffn_vec4_regs.wgsl` (`4 * CN * TX`).
pub const MOE_FFN_VEC4_REGS_TILE_COLS: usize = 48;

/// `moe_ffn_vec4_regs.wgsl` (written by `moe_ffn_vec4_regs.py`): the fast path on CPU
/// adapters, 128 × 48 tiles held in registers, no workgroup memory.
pub const MOE_FFN_VEC4_REGS: Shader = Shader {
    name: "moe_ffn_vec4_regs",
    file: "shaders/moe_ffn_vec4_regs.wgsl",
    template: include_str!("../../shaders/moe_ffn_vec4_regs.wgsl"),
    workgroup_size: 32,
    values: &[("enable", ""), ("storage", "vec4<f32>")],
    f16: false,
};

/// [`MOE_FFN_VEC4_REGS`] on f16 operands and output (f32 accumulation).
pub const MOE_FFN_VEC4_REGS_F16: Shader = Shader {
    name: "moe_ffn_vec4_regs_f16",
    values: &[("enable", "enable f16;"), ("storage", "vec4<f16>")],
    f16: true,
    ..MOE_FFN_VEC4_REGS
};

/// Every shader the crate launches.
pub const SHADERS: &[Shader] = &[
    PIXEL_STATS,
    PIXEL_STATS_VEC4,
    PIXEL_STATS_F16,
    PIXEL_STATS_VEC4_F16,
    PIXEL_STATS_REDUCE,
    MOE_FFN,
    MOE_FFN_F16,
    MOE_FFN_VEC4,
    MOE_FFN_VEC4_F16,
    MOE_FFN_VEC4_N48,
    MOE_FFN_VEC4_N48_F16,
    MOE_FFN_VEC4_REGS,
    MOE_FFN_VEC4_REGS_F16,
];
