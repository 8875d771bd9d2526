// moe_ffn: the second half of an FFN-MoE block as one grouped GEMM.
//
//   out[n, 0 .. C-P]  = h[n] · w_shared       + b_shared
//   out[n, C-P .. C]  = h[n] · w_expert[t(n)] + b_expert[t(n)]
//
// written straight into the concatenated layout. Rows of one batch may belong to different
// datasets. Each workgroup owns a TM × TN output tile that lies wholly in the shared or the
// expert column block; an expert tile runs one K-sweep per dataset present among its rows
// (rows of other datasets contribute zeros), so tiles of a single dataset, the usual case
// when a sample's tokens are contiguous, cost the same as a dense GEMM. A row whose id is
// outside [0, T) gets a zero expert part (no bias), as the reference does.
//
// Shapes:  h [N, F] (F = 4D), w_shared [F, C-P], b_shared [C-P], w_expert [T, F, P],
//          b_expert [T, P], ids [N] i32, out [N, C].
// Dispatch: (tiles(C-P) + tiles(P), tiles(N), 1), tiles(x) = ceil(x / TN) or ceil(x / TM).
// No size needs to divide the tile sizes.

const TM: u32 = 64u;          // rows per tile
const TN: u32 = 64u;          // columns per tile
const TK: u32 = {{ tile_k }}u; // depth per step
const RM: u32 = 4u;           // rows per invocation
const RN: u32 = 4u;           // columns per invocation
const WG: u32 = {{ workgroup_size }}u; // must be (TM / RM) * (TN / RN) = 256

struct Params {
    rows: u32,        // N
    depth: u32,       // F
    shared_cols: u32, // C - P
    expert_cols: u32, // P
    datasets: u32,    // T
}

// Every binding is read_write: cubecl sub-allocates tensors from shared wgpu buffers, and a
// buffer bound read-only and read-write in one dispatch is a wgpu usage conflict.
@group(0) @binding(0) var<storage, read_write> h: array<f32>;
@group(0) @binding(1) var<storage, read_write> w_shared: array<f32>;
@group(0) @binding(2) var<storage, read_write> b_shared: array<f32>;
@group(0) @binding(3) var<storage, read_write> w_expert: array<f32>;
@group(0) @binding(4) var<storage, read_write> b_expert: array<f32>;
@group(0) @binding(5) var<storage, read_write> ids: array<i32>;
@group(0) @binding(6) var<storage, read_write> params: Params;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

var<workgroup> a_tile: array<f32, TK * TM>;   // [k][row]
var<workgroup> b_tile: array<f32, TK * TN>;   // [k][col]
var<workgroup> tile_ids: array<i32, TM>;
var<workgroup> present: u32;
var<workgroup> uniform_params: Params;

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
    let shared_cols = sizes.shared_cols;
    let expert_cols = sizes.expert_cols;
    let datasets = sizes.datasets;
    let out_cols = shared_cols + expert_cols;
    let shared_tiles = (shared_cols + TN - 1u) / TN;

    let is_expert = wid.x >= shared_tiles;
    let col_tile = select(wid.x, wid.x - shared_tiles, is_expert);
    let col0 = col_tile * TN;                        // within its block
    let block_cols = select(shared_cols, expert_cols, is_expert);
    let block_offset = select(0u, shared_cols, is_expert); // first output column of the block
    let row0 = wid.y * TM;

    let tr = lid / (TN / RN);                        // 0..16: row group
    let tc = lid % (TN / RN);                        // 0..16: column group

    if (lid < TM) {
        let r = row0 + lid;
        tile_ids[lid] = select(-1, ids[min(r, rows - 1u)], r < rows);
    }
    workgroupBarrier();

    // One vec4 accumulator per row of the invocation's RM x RN block (RN == 4).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    // Shared tiles make one sweep; expert tiles one sweep per dataset present.
    let passes = select(1u, datasets, is_expert);
    for (var t = 0u; t < passes; t++) {
        if (lid == 0u) {
            var found = 0u;
            for (var i = 0u; i < TM; i++) {
                found = found | select(0u, 1u, tile_ids[i] == i32(t));
            }
            present = select(1u, found, is_expert);
        }
        let run = workgroupUniformLoad(&present);
        if (run != 0u) {
            let w_base = t * depth * expert_cols;

            for (var k0 = 0u; k0 < depth; k0 += TK) {
                // Load A: TK x TM values, rows of other datasets as zeros.
                for (var i = lid; i < TK * TM; i += WG) {
                    let kk = i / TM;
                    let rr = i % TM;
                    let r = row0 + rr;
                    let k = k0 + kk;
                    var v = 0.0;
                    let keep = !is_expert || tile_ids[rr] == i32(t);
                    if (r < rows && k < depth && keep) {
                        v = h[r * depth + k];
                    }
                    a_tile[kk * TM + rr] = v;
                }
                // Load B: TK x TN values of the block's weight.
                for (var i = lid; i < TK * TN; i += WG) {
                    let kk = i / TN;
                    let cc = i % TN;
                    let c = col0 + cc;
                    let k = k0 + kk;
                    var v = 0.0;
                    if (c < block_cols && k < depth) {
                        if (is_expert) {
                            v = w_expert[w_base + k * expert_cols + c];
                        } else {
                            v = w_shared[k * shared_cols + c];
                        }
                    }
                    b_tile[kk * TN + cc] = v;
                }
                workgroupBarrier();
                for (var kk = 0u; kk < TK; kk++) {
                    let a = vec4<f32>(
                        a_tile[kk * TM + tr * RM],
                        a_tile[kk * TM + tr * RM + 1u],
                        a_tile[kk * TM + tr * RM + 2u],
                        a_tile[kk * TM + tr * RM + 3u],
                    );
                    let bv = vec4<f32>(
                        b_tile[kk * TN + tc * RN],
                        b_tile[kk * TN + tc * RN + 1u],
                        b_tile[kk * TN + tc * RN + 2u],
                        b_tile[kk * TN + tc * RN + 3u],
                    );
                    acc0 = fma(vec4<f32>(a.x), bv, acc0);
                    acc1 = fma(vec4<f32>(a.y), bv, acc1);
                    acc2 = fma(vec4<f32>(a.z), bv, acc2);
                    acc3 = fma(vec4<f32>(a.w), bv, acc3);
                }
                workgroupBarrier();
            }
        }
        // Every invocation has read `present` before invocation 0 rewrites it.
        workgroupBarrier();
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);

    for (var i = 0u; i < RM; i++) {
        let rr = tr * RM + i;
        let r = row0 + rr;
        if (r >= rows) {
            continue;
        }
        let id = tile_ids[rr];
        for (var j = 0u; j < RN; j++) {
            let c = col0 + tc * RN + j;
            if (c >= block_cols) {
                continue;
            }
            var bias = 0.0;
            if (!is_expert) {
                bias = b_shared[c];
            } else if (id >= 0 && u32(id) < datasets) {
                bias = b_expert[u32(id) * expert_cols + c];
            }
            out[r * out_cols + block_offset + c] = acc[i][j] + bias;
        }
    }
}
