{{ enable }}
// moe_ffn_vec4: the fast path of `moe_ffn.wgsl` (same contract) when F, C-P and P are
// multiples of 4: a grouped GEMM tiled in workgroup memory, everything moved as vec4.
//
//   out[n, 0 .. C-P]  = h[n] · w_shared       + b_shared
//   out[n, C-P .. C]  = h[n] · w_expert[t(n)] + b_expert[t(n)]
//
// A workgroup of 8 × TX invocations owns a 128-row × 8·TX-column output tile (TX = 8: 64
// columns, or 6: 48, whichever pads the column blocks less) lying wholly in the shared or the
// expert column block; each invocation owns a 16-row × 8-column block (16 rows × two vec4,
// accumulators unrolled by hand). Per depth step the workgroup stages h[128 rows, TK]
// (depths as vec4) and w[TK, tile columns] in workgroup memory. An expert tile sweeps the
// depth once per dataset present among its rows (rows of other datasets load as zeros), so
// tiles of one dataset, the usual case when a sample's tokens are contiguous, cost what a
// dense GEMM does. A row whose id is outside [0, T) gets a zero expert part (no bias).
//
// Tuned on lavapipe (see README, Benchmarks): 16 rows per invocation beat 4, 8 and 32, and
// staging h untransposed beat transposing it.
//
// Shapes:  h [N, F] (F = 4D), w_shared [F, C-P], b_shared [C-P], w_expert [T, F, P],
//          b_expert [T, P], ids [N] i32, out [N, C]; all but ids and params bound as vec4.
// Dispatch: (ceil((C-P) / TN) + ceil(P / TN), ceil(N / 128), 1), TN = 8·TX. N need not
// divide anything.

const WG: u32 = {{ workgroup_size }}u; // must be 8 * TX
const TX: u32 = {{ tile_x }}u;         // invocations across the tile's columns
const RM: u32 = 16u;                   // rows per invocation
const TM: u32 = 8u * RM;               // rows per tile
const TN4: u32 = 2u * TX;              // vec4 columns per tile
const TK: u32 = {{ tile_k }}u;         // depth per step, a multiple of 4

// What operands and output are stored as: vec4<f32>, or vec4<f16> in the variants that enable
// f16; either way tiles and accumulators are f32 and the output is rounded once, when written.
alias S = {{ storage }};

struct Params {
    rows: u32,         // N
    depth4: u32,       // F / 4
    shared_units: u32, // (C - P) / 4
    expert_units: u32, // P / 4
    datasets: u32,     // T
}

// Every binding is read_write: cubecl sub-allocates tensors from shared wgpu buffers, and a
// buffer bound read-only and read-write in one dispatch is a wgpu usage conflict.
@group(0) @binding(0) var<storage, read_write> h: array<S>;
@group(0) @binding(1) var<storage, read_write> w_shared: array<S>;
@group(0) @binding(2) var<storage, read_write> b_shared: array<S>;
@group(0) @binding(3) var<storage, read_write> w_expert: array<S>;
@group(0) @binding(4) var<storage, read_write> b_expert: array<S>;
@group(0) @binding(5) var<storage, read_write> ids: array<i32>;
@group(0) @binding(6) var<storage, read_write> params: Params;
@group(0) @binding(7) var<storage, read_write> out: array<S>;

var<workgroup> a_tile: array<vec4<f32>, TM * TK / 4u>; // [row][k / 4], 4 depths per vec4
var<workgroup> b_tile: array<vec4<f32>, TK * TN4>;     // [k][column / 4]
var<workgroup> tile_ids: array<i32, TM>;
var<workgroup> uniform_params: Params;
var<workgroup> present: u32;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Loop bounds around barriers must be uniform: read the sizes through workgroup memory.
    if (lid == 0u) {
        uniform_params = params;
    }
    let sizes = workgroupUniformLoad(&uniform_params);
    let rows = sizes.rows;
    let depth4 = sizes.depth4;
    let shared_units = sizes.shared_units;
    let expert_units = sizes.expert_units;
    let out_units = shared_units + expert_units;

    let shared_tiles = (shared_units + TN4 - 1u) / TN4;
    let is_expert = wid.x >= shared_tiles;
    let unit0 = select(wid.x, wid.x - shared_tiles, is_expert) * TN4; // within the block
    let block_units = select(shared_units, expert_units, is_expert);
    let row0 = wid.y * TM;
    let ty = lid / TX; // rows ty*RM .. ty*RM+RM
    let tx = lid % TX; // vec4 columns tx*2, tx*2+1
    let w_row = lid / TN4;           // first weight row this invocation stages
    let w_col = lid % TN4;           // the vec4 column it stages
    let w_unit = unit0 + w_col;
    let w_unit_ok = w_unit < block_units;

    for (var i = lid; i < TM; i += WG) {
        let r = row0 + i;
        tile_ids[i] = select(-1, ids[min(r, rows - 1u)], r < rows);
    }
    workgroupBarrier();

    // acc{row}{vec4 column}: unrolled by hand so every accumulator stays in a register.
    var acc0_0 = vec4<f32>(0.0);
    var acc0_1 = vec4<f32>(0.0);
    var acc1_0 = vec4<f32>(0.0);
    var acc1_1 = vec4<f32>(0.0);
    var acc2_0 = vec4<f32>(0.0);
    var acc2_1 = vec4<f32>(0.0);
    var acc3_0 = vec4<f32>(0.0);
    var acc3_1 = vec4<f32>(0.0);
    var acc4_0 = vec4<f32>(0.0);
    var acc4_1 = vec4<f32>(0.0);
    var acc5_0 = vec4<f32>(0.0);
    var acc5_1 = vec4<f32>(0.0);
    var acc6_0 = vec4<f32>(0.0);
    var acc6_1 = vec4<f32>(0.0);
    var acc7_0 = vec4<f32>(0.0);
    var acc7_1 = vec4<f32>(0.0);
    var acc8_0 = vec4<f32>(0.0);
    var acc8_1 = vec4<f32>(0.0);
    var acc9_0 = vec4<f32>(0.0);
    var acc9_1 = vec4<f32>(0.0);
    var acc10_0 = vec4<f32>(0.0);
    var acc10_1 = vec4<f32>(0.0);
    var acc11_0 = vec4<f32>(0.0);
    var acc11_1 = vec4<f32>(0.0);
    var acc12_0 = vec4<f32>(0.0);
    var acc12_1 = vec4<f32>(0.0);
    var acc13_0 = vec4<f32>(0.0);
    var acc13_1 = vec4<f32>(0.0);
    var acc14_0 = vec4<f32>(0.0);
    var acc14_1 = vec4<f32>(0.0);
    var acc15_0 = vec4<f32>(0.0);
    var acc15_1 = vec4<f32>(0.0);

    // Shared tiles make one sweep; expert tiles one sweep per dataset present.
    let passes = select(1u, sizes.datasets, is_expert);
    for (var t = 0u; t < passes; t++) {
        if (lid == 0u) {
            var found = !is_expert;
            for (var i = 0u; i < TM; i++) {
                found = found || tile_ids[i] == i32(t);
            }
            present = select(0u, 1u, found);
        }
        if (workgroupUniformLoad(&present) != 0u) {
            let w_base = t * depth4 * 4u * expert_units;
            for (var k0 = 0u; k0 < depth4 * 4u; k0 += TK) {
                // Stage h: TM rows × TK/4 vec4 along k.
                for (var i = lid; i < TM * TK / 4u; i += WG) {
                    let rr = i / (TK / 4u);
                    let k4 = i % (TK / 4u);
                    let r = row0 + rr;
                    let kq = k0 / 4u + k4;
                    var v = vec4<f32>(0.0);
                    if (r < rows && kq < depth4 && (!is_expert || tile_ids[rr] == i32(t))) {
                        v = vec4<f32>(h[r * depth4 + kq]);
                    }
                    a_tile[i] = v;
                }
                // Stage w: TK rows of the block's weight × TN4 vec4 columns. WG = 4 · TN4,
                // so an invocation keeps its column and steps 4 rows (no division in the loop).
                for (var kk = w_row; kk < TK; kk += WG / TN4) {
                    let k = k0 + kk;
                    var v = vec4<f32>(0.0);
                    if (w_unit_ok && k < depth4 * 4u) {
                        if (is_expert) {
                            v = vec4<f32>(w_expert[w_base + k * expert_units + w_unit]);
                        } else {
                            v = vec4<f32>(w_shared[k * shared_units + w_unit]);
                        }
                    }
                    b_tile[kk * TN4 + w_col] = v;
                }
                workgroupBarrier();
                for (var k4 = 0u; k4 < TK / 4u; k4++) {
                    let a0 = a_tile[(ty * RM + 0u) * (TK / 4u) + k4];
                    let a1 = a_tile[(ty * RM + 1u) * (TK / 4u) + k4];
                    let a2 = a_tile[(ty * RM + 2u) * (TK / 4u) + k4];
                    let a3 = a_tile[(ty * RM + 3u) * (TK / 4u) + k4];
                    let a4 = a_tile[(ty * RM + 4u) * (TK / 4u) + k4];
                    let a5 = a_tile[(ty * RM + 5u) * (TK / 4u) + k4];
                    let a6 = a_tile[(ty * RM + 6u) * (TK / 4u) + k4];
                    let a7 = a_tile[(ty * RM + 7u) * (TK / 4u) + k4];
                    let a8 = a_tile[(ty * RM + 8u) * (TK / 4u) + k4];
                    let a9 = a_tile[(ty * RM + 9u) * (TK / 4u) + k4];
                    let a10 = a_tile[(ty * RM + 10u) * (TK / 4u) + k4];
                    let a11 = a_tile[(ty * RM + 11u) * (TK / 4u) + k4];
                    let a12 = a_tile[(ty * RM + 12u) * (TK / 4u) + k4];
                    let a13 = a_tile[(ty * RM + 13u) * (TK / 4u) + k4];
                    let a14 = a_tile[(ty * RM + 14u) * (TK / 4u) + k4];
                    let a15 = a_tile[(ty * RM + 15u) * (TK / 4u) + k4];
                    let b00 = b_tile[(k4 * 4u + 0u) * TN4 + tx * 2u];
                    let b01 = b_tile[(k4 * 4u + 0u) * TN4 + tx * 2u + 1u];
                    acc0_0 = fma(vec4<f32>(a0.x), b00, acc0_0);
                    acc0_1 = fma(vec4<f32>(a0.x), b01, acc0_1);
                    acc1_0 = fma(vec4<f32>(a1.x), b00, acc1_0);
                    acc1_1 = fma(vec4<f32>(a1.x), b01, acc1_1);
                    acc2_0 = fma(vec4<f32>(a2.x), b00, acc2_0);
                    acc2_1 = fma(vec4<f32>(a2.x), b01, acc2_1);
                    acc3_0 = fma(vec4<f32>(a3.x), b00, acc3_0);
                    acc3_1 = fma(vec4<f32>(a3.x), b01, acc3_1);
                    acc4_0 = fma(vec4<f32>(a4.x), b00, acc4_0);
                    acc4_1 = fma(vec4<f32>(a4.x), b01, acc4_1);
                    acc5_0 = fma(vec4<f32>(a5.x), b00, acc5_0);
                    acc5_1 = fma(vec4<f32>(a5.x), b01, acc5_1);
                    acc6_0 = fma(vec4<f32>(a6.x), b00, acc6_0);
                    acc6_1 = fma(vec4<f32>(a6.x), b01, acc6_1);
                    acc7_0 = fma(vec4<f32>(a7.x), b00, acc7_0);
                    acc7_1 = fma(vec4<f32>(a7.x), b01, acc7_1);
                    acc8_0 = fma(vec4<f32>(a8.x), b00, acc8_0);
                    acc8_1 = fma(vec4<f32>(a8.x), b01, acc8_1);
                    acc9_0 = fma(vec4<f32>(a9.x), b00, acc9_0);
                    acc9_1 = fma(vec4<f32>(a9.x), b01, acc9_1);
                    acc10_0 = fma(vec4<f32>(a10.x), b00, acc10_0);
                    acc10_1 = fma(vec4<f32>(a10.x), b01, acc10_1);
                    acc11_0 = fma(vec4<f32>(a11.x), b00, acc11_0);
                    acc11_1 = fma(vec4<f32>(a11.x), b01, acc11_1);
                    acc12_0 = fma(vec4<f32>(a12.x), b00, acc12_0);
                    acc12_1 = fma(vec4<f32>(a12.x), b01, acc12_1);
                    acc13_0 = fma(vec4<f32>(a13.x), b00, acc13_0);
                    acc13_1 = fma(vec4<f32>(a13.x), b01, acc13_1);
                    acc14_0 = fma(vec4<f32>(a14.x), b00, acc14_0);
                    acc14_1 = fma(vec4<f32>(a14.x), b01, acc14_1);
                    acc15_0 = fma(vec4<f32>(a15.x), b00, acc15_0);
                    acc15_1 = fma(vec4<f32>(a15.x), b01, acc15_1);
                    let b10 = b_tile[(k4 * 4u + 1u) * TN4 + tx * 2u];
                    let b11 = b_tile[(k4 * 4u + 1u) * TN4 + tx * 2u + 1u];
                    acc0_0 = fma(vec4<f32>(a0.y), b10, acc0_0);
                    acc0_1 = fma(vec4<f32>(a0.y), b11, acc0_1);
                    acc1_0 = fma(vec4<f32>(a1.y), b10, acc1_0);
                    acc1_1 = fma(vec4<f32>(a1.y), b11, acc1_1);
                    acc2_0 = fma(vec4<f32>(a2.y), b10, acc2_0);
                    acc2_1 = fma(vec4<f32>(a2.y), b11, acc2_1);
                    acc3_0 = fma(vec4<f32>(a3.y), b10, acc3_0);
                    acc3_1 = fma(vec4<f32>(a3.y), b11, acc3_1);
                    acc4_0 = fma(vec4<f32>(a4.y), b10, acc4_0);
                    acc4_1 = fma(vec4<f32>(a4.y), b11, acc4_1);
                    acc5_0 = fma(vec4<f32>(a5.y), b10, acc5_0);
                    acc5_1 = fma(vec4<f32>(a5.y), b11, acc5_1);
                    acc6_0 = fma(vec4<f32>(a6.y), b10, acc6_0);
                    acc6_1 = fma(vec4<f32>(a6.y), b11, acc6_1);
                    acc7_0 = fma(vec4<f32>(a7.y), b10, acc7_0);
                    acc7_1 = fma(vec4<f32>(a7.y), b11, acc7_1);
                    acc8_0 = fma(vec4<f32>(a8.y), b10, acc8_0);
                    acc8_1 = fma(vec4<f32>(a8.y), b11, acc8_1);
                    acc9_0 = fma(vec4<f32>(a9.y), b10, acc9_0);
                    acc9_1 = fma(vec4<f32>(a9.y), b11, acc9_1);
                    acc10_0 = fma(vec4<f32>(a10.y), b10, acc10_0);
                    acc10_1 = fma(vec4<f32>(a10.y), b11, acc10_1);
                    acc11_0 = fma(vec4<f32>(a11.y), b10, acc11_0);
                    acc11_1 = fma(vec4<f32>(a11.y), b11, acc11_1);
                    acc12_0 = fma(vec4<f32>(a12.y), b10, acc12_0);
                    acc12_1 = fma(vec4<f32>(a12.y), b11, acc12_1);
                    acc13_0 = fma(vec4<f32>(a13.y), b10, acc13_0);
                    acc13_1 = fma(vec4<f32>(a13.y), b11, acc13_1);
                    acc14_0 = fma(vec4<f32>(a14.y), b10, acc14_0);
                    acc14_1 = fma(vec4<f32>(a14.y), b11, acc14_1);
                    acc15_0 = fma(vec4<f32>(a15.y), b10, acc15_0);
                    acc15_1 = fma(vec4<f32>(a15.y), b11, acc15_1);
                    let b20 = b_tile[(k4 * 4u + 2u) * TN4 + tx * 2u];
                    let b21 = b_tile[(k4 * 4u + 2u) * TN4 + tx * 2u + 1u];
                    acc0_0 = fma(vec4<f32>(a0.z), b20, acc0_0);
                    acc0_1 = fma(vec4<f32>(a0.z), b21, acc0_1);
                    acc1_0 = fma(vec4<f32>(a1.z), b20, acc1_0);
                    acc1_1 = fma(vec4<f32>(a1.z), b21, acc1_1);
                    acc2_0 = fma(vec4<f32>(a2.z), b20, acc2_0);
                    acc2_1 = fma(vec4<f32>(a2.z), b21, acc2_1);
                    acc3_0 = fma(vec4<f32>(a3.z), b20, acc3_0);
                    acc3_1 = fma(vec4<f32>(a3.z), b21, acc3_1);
                    acc4_0 = fma(vec4<f32>(a4.z), b20, acc4_0);
                    acc4_1 = fma(vec4<f32>(a4.z), b21, acc4_1);
                    acc5_0 = fma(vec4<f32>(a5.z), b20, acc5_0);
                    acc5_1 = fma(vec4<f32>(a5.z), b21, acc5_1);
                    acc6_0 = fma(vec4<f32>(a6.z), b20, acc6_0);
                    acc6_1 = fma(vec4<f32>(a6.z), b21, acc6_1);
                    acc7_0 = fma(vec4<f32>(a7.z), b20, acc7_0);
                    acc7_1 = fma(vec4<f32>(a7.z), b21, acc7_1);
                    acc8_0 = fma(vec4<f32>(a8.z), b20, acc8_0);
                    acc8_1 = fma(vec4<f32>(a8.z), b21, acc8_1);
                    acc9_0 = fma(vec4<f32>(a9.z), b20, acc9_0);
                    acc9_1 = fma(vec4<f32>(a9.z), b21, acc9_1);
                    acc10_0 = fma(vec4<f32>(a10.z), b20, acc10_0);
                    acc10_1 = fma(vec4<f32>(a10.z), b21, acc10_1);
                    acc11_0 = fma(vec4<f32>(a11.z), b20, acc11_0);
                    acc11_1 = fma(vec4<f32>(a11.z), b21, acc11_1);
                    acc12_0 = fma(vec4<f32>(a12.z), b20, acc12_0);
                    acc12_1 = fma(vec4<f32>(a12.z), b21, acc12_1);
                    acc13_0 = fma(vec4<f32>(a13.z), b20, acc13_0);
                    acc13_1 = fma(vec4<f32>(a13.z), b21, acc13_1);
                    acc14_0 = fma(vec4<f32>(a14.z), b20, acc14_0);
                    acc14_1 = fma(vec4<f32>(a14.z), b21, acc14_1);
                    acc15_0 = fma(vec4<f32>(a15.z), b20, acc15_0);
                    acc15_1 = fma(vec4<f32>(a15.z), b21, acc15_1);
                    let b30 = b_tile[(k4 * 4u + 3u) * TN4 + tx * 2u];
                    let b31 = b_tile[(k4 * 4u + 3u) * TN4 + tx * 2u + 1u];
                    acc0_0 = fma(vec4<f32>(a0.w), b30, acc0_0);
                    acc0_1 = fma(vec4<f32>(a0.w), b31, acc0_1);
                    acc1_0 = fma(vec4<f32>(a1.w), b30, acc1_0);
                    acc1_1 = fma(vec4<f32>(a1.w), b31, acc1_1);
                    acc2_0 = fma(vec4<f32>(a2.w), b30, acc2_0);
                    acc2_1 = fma(vec4<f32>(a2.w), b31, acc2_1);
                    acc3_0 = fma(vec4<f32>(a3.w), b30, acc3_0);
                    acc3_1 = fma(vec4<f32>(a3.w), b31, acc3_1);
                    acc4_0 = fma(vec4<f32>(a4.w), b30, acc4_0);
                    acc4_1 = fma(vec4<f32>(a4.w), b31, acc4_1);
                    acc5_0 = fma(vec4<f32>(a5.w), b30, acc5_0);
                    acc5_1 = fma(vec4<f32>(a5.w), b31, acc5_1);
                    acc6_0 = fma(vec4<f32>(a6.w), b30, acc6_0);
                    acc6_1 = fma(vec4<f32>(a6.w), b31, acc6_1);
                    acc7_0 = fma(vec4<f32>(a7.w), b30, acc7_0);
                    acc7_1 = fma(vec4<f32>(a7.w), b31, acc7_1);
                    acc8_0 = fma(vec4<f32>(a8.w), b30, acc8_0);
                    acc8_1 = fma(vec4<f32>(a8.w), b31, acc8_1);
                    acc9_0 = fma(vec4<f32>(a9.w), b30, acc9_0);
                    acc9_1 = fma(vec4<f32>(a9.w), b31, acc9_1);
                    acc10_0 = fma(vec4<f32>(a10.w), b30, acc10_0);
                    acc10_1 = fma(vec4<f32>(a10.w), b31, acc10_1);
                    acc11_0 = fma(vec4<f32>(a11.w), b30, acc11_0);
                    acc11_1 = fma(vec4<f32>(a11.w), b31, acc11_1);
                    acc12_0 = fma(vec4<f32>(a12.w), b30, acc12_0);
                    acc12_1 = fma(vec4<f32>(a12.w), b31, acc12_1);
                    acc13_0 = fma(vec4<f32>(a13.w), b30, acc13_0);
                    acc13_1 = fma(vec4<f32>(a13.w), b31, acc13_1);
                    acc14_0 = fma(vec4<f32>(a14.w), b30, acc14_0);
                    acc14_1 = fma(vec4<f32>(a14.w), b31, acc14_1);
                    acc15_0 = fma(vec4<f32>(a15.w), b30, acc15_0);
                    acc15_1 = fma(vec4<f32>(a15.w), b31, acc15_1);
                }
                workgroupBarrier();
            }
        }
        // Every invocation has read `present` before invocation 0 rewrites it.
        workgroupBarrier();
    }

    let acc = array<vec4<f32>, 32>(acc0_0, acc0_1, acc1_0, acc1_1, acc2_0, acc2_1, acc3_0, acc3_1, acc4_0, acc4_1, acc5_0, acc5_1, acc6_0, acc6_1, acc7_0, acc7_1, acc8_0, acc8_1, acc9_0, acc9_1, acc10_0, acc10_1, acc11_0, acc11_1, acc12_0, acc12_1, acc13_0, acc13_1, acc14_0, acc14_1, acc15_0, acc15_1);
    let block_offset = select(0u, shared_units, is_expert); // first output unit of the block
    for (var i = 0u; i < RM; i++) {
        let rr = ty * RM + i;
        let r = row0 + rr;
        if (r >= rows) {
            break;
        }
        let id = tile_ids[rr];
        for (var j = 0u; j < 2u; j++) {
            let u = unit0 + tx * 2u + j;
            if (u >= block_units) {
                continue;
            }
            var bias = vec4<f32>(0.0);
            if (!is_expert) {
                bias = vec4<f32>(b_shared[u]);
            } else if (id >= 0 && u32(id) < sizes.datasets) {
                bias = vec4<f32>(b_expert[u32(id) * expert_units + u]);
            }
            out[r * out_units + block_offset + u] = S(acc[i * 2u + j] + bias);
        }
    }
}
