// moe_ffn_vec4: the fast path of `moe_ffn.wgsl` (same contract) when F, C-P and P are
// multiples of 4: a grouped GEMM tiled 64 × 64 in workgroup memory, everything moved as vec4.
//
//   out[n, 0 .. C-P]  = h[n] · w_shared       + b_shared
//   out[n, C-P .. C]  = h[n] · w_expert[t(n)] + b_expert[t(n)]
//
// A workgroup of 8 × TX invocations owns a 64-row × 8·TX-column output tile (TX = 8: 64
// columns, or 6: 48, whichever pads the column blocks less) lying wholly in the shared or the
// expert column block; each invocation owns an 8 × 8 block (8 rows × two vec4). Per depth
// step the workgroup stages h[64 rows, TK] (transposed, rows as vec4) and w[TK, tile columns]
// in workgroup memory. An expert tile sweeps the depth once per dataset
// present among its rows (rows of other datasets load as zeros), so tiles of one dataset, the
// usual case when a sample's tokens are contiguous, cost what a dense GEMM does. A row whose id
// is outside [0, T) gets a zero expert part (no bias).
//
// Shapes:  h [N, F] (F = 4D), w_shared [F, C-P], b_shared [C-P], w_expert [T, F, P],
//          b_expert [T, P], ids [N] i32, out [N, C]; all but ids and params bound as vec4.
// Dispatch: (ceil((C-P) / TN) + ceil(P / TN), ceil(N / 64), 1), TN = 8·TX. N need not
// divide anything.

const WG: u32 = {{ workgroup_size }}u; // must be 8 * TX
const TX: u32 = {{ tile_x }}u;         // invocations across the tile's columns
const TM: u32 = 64u;                   // rows per tile
const TN4: u32 = 2u * TX;              // vec4 columns per tile
const TK: u32 = {{ tile_k }}u;         // depth per step, a multiple of 4

struct Params {
    rows: u32,         // N
    depth4: u32,       // F / 4
    shared_units: u32, // (C - P) / 4
    expert_units: u32, // P / 4
    datasets: u32,     // T
}

// Every binding is read_write: cubecl sub-allocates tensors from shared wgpu buffers, and a
// buffer bound read-only and read-write in one dispatch is a wgpu usage conflict.
@group(0) @binding(0) var<storage, read_write> h: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> w_shared: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> b_shared: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> w_expert: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> b_expert: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> ids: array<i32>;
@group(0) @binding(6) var<storage, read_write> params: Params;
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;

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
    let ty = lid / TX; // rows ty*8 .. ty*8+8
    let tx = lid % TX; // vec4 columns tx*2, tx*2+1

    for (var i = lid; i < TM; i += WG) {
        let r = row0 + i;
        tile_ids[i] = select(-1, ids[min(r, rows - 1u)], r < rows);
    }
    workgroupBarrier();

    // acc{row}{vec4 column}: unrolled by hand so every accumulator stays in a register.
    var acc00 = vec4<f32>(0.0);
    var acc01 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc20 = vec4<f32>(0.0);
    var acc21 = vec4<f32>(0.0);
    var acc30 = vec4<f32>(0.0);
    var acc31 = vec4<f32>(0.0);
    var acc40 = vec4<f32>(0.0);
    var acc41 = vec4<f32>(0.0);
    var acc50 = vec4<f32>(0.0);
    var acc51 = vec4<f32>(0.0);
    var acc60 = vec4<f32>(0.0);
    var acc61 = vec4<f32>(0.0);
    var acc70 = vec4<f32>(0.0);
    var acc71 = vec4<f32>(0.0);

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
                        v = h[r * depth4 + kq];
                    }
                    a_tile[i] = v;
                }
                // Stage w: TK rows of the block's weight × TN4 vec4 columns.
                for (var i = lid; i < TK * TN4; i += WG) {
                    let kk = i / TN4;
                    let u = unit0 + i % TN4;
                    let k = k0 + kk;
                    var v = vec4<f32>(0.0);
                    if (u < block_units && k < depth4 * 4u) {
                        if (is_expert) {
                            v = w_expert[w_base + k * expert_units + u];
                        } else {
                            v = w_shared[k * shared_units + u];
                        }
                    }
                    b_tile[i] = v;
                }
                workgroupBarrier();
                for (var k4 = 0u; k4 < TK / 4u; k4++) {
                    let a0 = a_tile[(ty * 8u + 0u) * (TK / 4u) + k4];
                    let a1 = a_tile[(ty * 8u + 1u) * (TK / 4u) + k4];
                    let a2 = a_tile[(ty * 8u + 2u) * (TK / 4u) + k4];
                    let a3 = a_tile[(ty * 8u + 3u) * (TK / 4u) + k4];
                    let a4 = a_tile[(ty * 8u + 4u) * (TK / 4u) + k4];
                    let a5 = a_tile[(ty * 8u + 5u) * (TK / 4u) + k4];
                    let a6 = a_tile[(ty * 8u + 6u) * (TK / 4u) + k4];
                    let a7 = a_tile[(ty * 8u + 7u) * (TK / 4u) + k4];
                    let b00 = b_tile[(k4 * 4u + 0u) * TN4 + tx * 2u];
                    let b01 = b_tile[(k4 * 4u + 0u) * TN4 + tx * 2u + 1u];
                    acc00 = fma(vec4<f32>(a0.x), b00, acc00);
                    acc01 = fma(vec4<f32>(a0.x), b01, acc01);
                    acc10 = fma(vec4<f32>(a1.x), b00, acc10);
                    acc11 = fma(vec4<f32>(a1.x), b01, acc11);
                    acc20 = fma(vec4<f32>(a2.x), b00, acc20);
                    acc21 = fma(vec4<f32>(a2.x), b01, acc21);
                    acc30 = fma(vec4<f32>(a3.x), b00, acc30);
                    acc31 = fma(vec4<f32>(a3.x), b01, acc31);
                    acc40 = fma(vec4<f32>(a4.x), b00, acc40);
                    acc41 = fma(vec4<f32>(a4.x), b01, acc41);
                    acc50 = fma(vec4<f32>(a5.x), b00, acc50);
                    acc51 = fma(vec4<f32>(a5.x), b01, acc51);
                    acc60 = fma(vec4<f32>(a6.x), b00, acc60);
                    acc61 = fma(vec4<f32>(a6.x), b01, acc61);
                    acc70 = fma(vec4<f32>(a7.x), b00, acc70);
                    acc71 = fma(vec4<f32>(a7.x), b01, acc71);
                    let b10 = b_tile[(k4 * 4u + 1u) * TN4 + tx * 2u];
                    let b11 = b_tile[(k4 * 4u + 1u) * TN4 + tx * 2u + 1u];
                    acc00 = fma(vec4<f32>(a0.y), b10, acc00);
                    acc01 = fma(vec4<f32>(a0.y), b11, acc01);
                    acc10 = fma(vec4<f32>(a1.y), b10, acc10);
                    acc11 = fma(vec4<f32>(a1.y), b11, acc11);
                    acc20 = fma(vec4<f32>(a2.y), b10, acc20);
                    acc21 = fma(vec4<f32>(a2.y), b11, acc21);
                    acc30 = fma(vec4<f32>(a3.y), b10, acc30);
                    acc31 = fma(vec4<f32>(a3.y), b11, acc31);
                    acc40 = fma(vec4<f32>(a4.y), b10, acc40);
                    acc41 = fma(vec4<f32>(a4.y), b11, acc41);
                    acc50 = fma(vec4<f32>(a5.y), b10, acc50);
                    acc51 = fma(vec4<f32>(a5.y), b11, acc51);
                    acc60 = fma(vec4<f32>(a6.y), b10, acc60);
                    acc61 = fma(vec4<f32>(a6.y), b11, acc61);
                    acc70 = fma(vec4<f32>(a7.y), b10, acc70);
                    acc71 = fma(vec4<f32>(a7.y), b11, acc71);
                    let b20 = b_tile[(k4 * 4u + 2u) * TN4 + tx * 2u];
                    let b21 = b_tile[(k4 * 4u + 2u) * TN4 + tx * 2u + 1u];
                    acc00 = fma(vec4<f32>(a0.z), b20, acc00);
                    acc01 = fma(vec4<f32>(a0.z), b21, acc01);
                    acc10 = fma(vec4<f32>(a1.z), b20, acc10);
                    acc11 = fma(vec4<f32>(a1.z), b21, acc11);
                    acc20 = fma(vec4<f32>(a2.z), b20, acc20);
                    acc21 = fma(vec4<f32>(a2.z), b21, acc21);
                    acc30 = fma(vec4<f32>(a3.z), b20, acc30);
                    acc31 = fma(vec4<f32>(a3.z), b21, acc31);
                    acc40 = fma(vec4<f32>(a4.z), b20, acc40);
                    acc41 = fma(vec4<f32>(a4.z), b21, acc41);
                    acc50 = fma(vec4<f32>(a5.z), b20, acc50);
                    acc51 = fma(vec4<f32>(a5.z), b21, acc51);
                    acc60 = fma(vec4<f32>(a6.z), b20, acc60);
                    acc61 = fma(vec4<f32>(a6.z), b21, acc61);
                    acc70 = fma(vec4<f32>(a7.z), b20, acc70);
                    acc71 = fma(vec4<f32>(a7.z), b21, acc71);
                    let b30 = b_tile[(k4 * 4u + 3u) * TN4 + tx * 2u];
                    let b31 = b_tile[(k4 * 4u + 3u) * TN4 + tx * 2u + 1u];
                    acc00 = fma(vec4<f32>(a0.w), b30, acc00);
                    acc01 = fma(vec4<f32>(a0.w), b31, acc01);
                    acc10 = fma(vec4<f32>(a1.w), b30, acc10);
                    acc11 = fma(vec4<f32>(a1.w), b31, acc11);
                    acc20 = fma(vec4<f32>(a2.w), b30, acc20);
                    acc21 = fma(vec4<f32>(a2.w), b31, acc21);
                    acc30 = fma(vec4<f32>(a3.w), b30, acc30);
                    acc31 = fma(vec4<f32>(a3.w), b31, acc31);
                    acc40 = fma(vec4<f32>(a4.w), b30, acc40);
                    acc41 = fma(vec4<f32>(a4.w), b31, acc41);
                    acc50 = fma(vec4<f32>(a5.w), b30, acc50);
                    acc51 = fma(vec4<f32>(a5.w), b31, acc51);
                    acc60 = fma(vec4<f32>(a6.w), b30, acc60);
                    acc61 = fma(vec4<f32>(a6.w), b31, acc61);
                    acc70 = fma(vec4<f32>(a7.w), b30, acc70);
                    acc71 = fma(vec4<f32>(a7.w), b31, acc71);
                }
                workgroupBarrier();
            }
        }
        // Every invocation has read `present` before invocation 0 rewrites it.
        workgroupBarrier();
    }

    let acc = array<vec4<f32>, 16>(acc00, acc01, acc10, acc11, acc20, acc21, acc30, acc31, acc40, acc41, acc50, acc51, acc60, acc61, acc70, acc71);
    let block_offset = select(0u, shared_units, is_expert); // first output unit of the block
    for (var i = 0u; i < 8u; i++) {
        let rr = ty * 8u + i;
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
                bias = b_shared[u];
            } else if (id >= 0 && u32(id) < sizes.datasets) {
                bias = b_expert[u32(id) * expert_units + u];
            }
            out[r * out_units + block_offset + u] = acc[i * 2u + j] + bias;
        }
    }
}
