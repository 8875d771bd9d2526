// pixel_stats_reduce: per-image mean entropy from the partials of `pixel_stats.wgsl`.
//
// Shapes:  partials [B, S, 2] = (entropy sum, valid count), entropy [B].
// Dispatch: (B, 1, 1) workgroups. An image with no valid pixel gets entropy 0, not NaN.

const WG: u32 = {{ workgroup_size }}u;

struct Params {
    slots: u32, // S: partials per image
}

// Every binding is read_write: cubecl sub-allocates tensors from shared wgpu buffers, and a
// buffer bound read-only and read-write in one dispatch is a wgpu usage conflict.
@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> params: Params;
@group(0) @binding(2) var<storage, read_write> entropy: array<f32>;

var<workgroup> sum_shared: array<f32, WG>;
var<workgroup> count_shared: array<f32, WG>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let b = wid.x;
    var total = 0.0;
    var count = 0.0;
    for (var i = lid; i < params.slots; i += WG) {
        let at = (b * params.slots + i) * 2u;
        total += partials[at];
        count += partials[at + 1u];
    }
    sum_shared[lid] = total;
    count_shared[lid] = count;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            sum_shared[lid] += sum_shared[lid + stride];
            count_shared[lid] += count_shared[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        entropy[b] = sum_shared[0] / max(count_shared[0], 1.0);
    }
}
