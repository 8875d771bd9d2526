{{ enable }}
// moe_ffn: the second half of an FFN-MoE block as one grouped GEMM.
//
//   out[n, 0 .. C-P]  = h[n] · w_shared       + b_shared
//   out[n, C-P .. C]  = h[n] · w_expert[t(n)] + b_expert[t(n)]
//
// written straight into the concatenated layout. Rows of one batch may belong to different
// datasets. This is the general kernel, for any widths; `moe_ffn_vec4.wgsl` is the fast path
// when F, C-P and P are multiples of 4. A workgroup owns ROWS rows and WG columns of one
// column block (shared or expert); each invocation owns one column of all ROWS rows. The ROWS × TK slice of `h` is
// staged in workgroup memory and read at addresses that are the same for every invocation
// (a broadcast); weights stream from global memory, adjacent invocations reading adjacent
// columns. An expert tile sweeps the depth once per dataset present among its rows (rows of
// other datasets contribute zeros), so a tile of a single dataset, the usual case when a
// sample's tokens are contiguous, costs what a dense GEMM does. A row whose id is outside
// [0, T) gets a zero expert part (no bias), as the reference does.
//
// Operands and output are stored as S: f32, or f16 in the variants that turn f16 on; either
// way every product is accumulated in f32 and rounded once, when written.
//
// Shapes:  h [N, F] (F = 4D), w_shared [F, C-P], b_shared [C-P], w_expert [T, F, P],
//          b_expert [T, P], ids [N] i32, out [N, C].
// Dispatch: (tiles(C-P) + tiles(P), ceil(N / ROWS), 1), tiles(x) = ceil(x / WG).
// No size needs to divide the tile sizes.

const WG: u32 = {{ workgroup_size }}u; // invocations, one column each
const ROWS: u32 = {{ rows }}u;         // rows per workgroup (the accumulators of a lane)
const TK: u32 = {{ tile_k }}u;         // depth staged per step

alias S = {{ storage }}; // what operands and output are stored as: f32 or f16

struct Params {
    rows: u32,        // N
    depth: u32,       // F
    shared_units: u32, // C - P
    expert_units: u32, // P
    datasets: u32,    // T
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

var<workgroup> h_tile: array<f32, ROWS * TK>;  // [row][k]
var<workgroup> tile_ids: array<i32, ROWS>;
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
    let depth = sizes.depth;
    let shared_units = sizes.shared_units;
    let expert_units = sizes.expert_units;
    let out_units = shared_units + expert_units;

    let shared_tiles = (shared_units + WG - 1u) / WG;
    let is_expert = wid.x >= shared_tiles;
    let unit = select(wid.x, wid.x - shared_tiles, is_expert) * WG + lid; // within the block
    let block_units = select(shared_units, expert_units, is_expert);
    let in_block = unit < block_units;
    let safe_unit = min(unit, block_units - 1u); // loads stay in bounds; stores are guarded
    let row0 = wid.y * ROWS;

    for (var i = lid; i < ROWS; i += WG) {
        let r = row0 + i;
        tile_ids[i] = select(-1, ids[min(r, rows - 1u)], r < rows);
    }
    workgroupBarrier();

    var acc: array<f32, ROWS>;
    for (var i = 0u; i < ROWS; i++) {
        acc[i] = 0.0;
    }

    // Shared tiles make one sweep; expert tiles one sweep per dataset present.
    let passes = select(1u, sizes.datasets, is_expert);
    for (var t = 0u; t < passes; t++) {
        if (lid == 0u) {
            var found = !is_expert;
            for (var i = 0u; i < ROWS; i++) {
                found = found || tile_ids[i] == i32(t);
            }
            present = select(0u, 1u, found);
        }
        if (workgroupUniformLoad(&present) != 0u) {
            let w_base = t * depth * expert_units;
            for (var k0 = 0u; k0 < depth; k0 += TK) {
                for (var i = lid; i < ROWS * TK; i += WG) {
                    let rr = i / TK;
                    let r = row0 + rr;
                    let k = k0 + i % TK;
                    var v = 0.0;
                    if (r < rows && k < depth && (!is_expert || tile_ids[rr] == i32(t))) {
                        v = f32(h[r * depth + k]);
                    }
                    h_tile[i] = v;
                }
                workgroupBarrier();
                let steps = min(TK, depth - k0);
                for (var kk = 0u; kk < steps; kk++) {
                    let k = k0 + kk;
                    var w: f32;
                    if (is_expert) {
                        w = f32(w_expert[w_base + k * expert_units + safe_unit]);
                    } else {
                        w = f32(w_shared[k * shared_units + safe_unit]);
                    }
                    for (var i = 0u; i < ROWS; i++) {
                        acc[i] = fma(h_tile[i * TK + kk], w, acc[i]);
                    }
                }
                workgroupBarrier();
            }
        }
        // Every invocation has read `present` before invocation 0 rewrites it.
        workgroupBarrier();
    }

    if (!in_block) {
        return;
    }
    let block_offset = select(0u, shared_units, is_expert); // first output unit of the block
    for (var i = 0u; i < ROWS; i++) {
        let r = row0 + i;
        if (r >= rows) {
            break;
        }
        let id = tile_ids[i];
        var bias = 0.0;
        if (!is_expert) {
            bias = f32(b_shared[unit]);
        } else if (id >= 0 && u32(id) < sizes.datasets) {
            bias = f32(b_expert[u32(id) * expert_units + unit]);
        }
        out[r * out_units + block_offset + unit] = S(acc[i] + bias);
    }
}
