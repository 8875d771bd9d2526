// pixel_stats: one pass over segmentation logits (online softmax, each logit read once).
//
// Per pixel: argmax class (the FixMatch pseudo-label) and its softmax probability (the
// confidence). Per workgroup: the sum of pixel entropies (paper Eq. 1) over valid pixels
// and the number of valid pixels, written as partials that `pixel_stats_reduce.wgsl` turns
// into a per-image mean. No float atomics: the per-image sum is a workgroup tree reduction.
//
// Shapes:  logits [B, K, H, W] (contiguous), mask [B, H, W] (1 = valid) or [1] when
//          has_mask == 0, labels [B, H, W] i32, confidence [B, H, W],
//          partials [B, G, 2] = (entropy sum, valid count) per workgroup g.
// Dispatch: (G, B, 1) workgroups of WG invocations; pixels are visited grid-stride.

const WG: u32 = {{ workgroup_size }}u;
const NO_BACKGROUND: u32 = 0xffffffffu;

struct Params {
    classes: u32,
    pixels: u32,     // H * W
    groups: u32,     // G: workgroups per image
    has_mask: u32,
    background: u32, // class whose p log p term is left out, or NO_BACKGROUND
}

// Every binding is read_write: cubecl sub-allocates tensors from shared wgpu buffers, and a
// buffer bound read-only and read-write in one dispatch is a wgpu usage conflict.
@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read_write> mask: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: Params;
@group(0) @binding(3) var<storage, read_write> labels: array<i32>;
@group(0) @binding(4) var<storage, read_write> confidence: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

var<workgroup> sum_shared: array<f32, WG>;
var<workgroup> count_shared: array<f32, WG>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x;
    let b = wid.y;
    let classes = params.classes;
    let pixels = params.pixels;
    let image_base = b * classes * pixels;

    var entropy_sum = 0.0;
    var valid_count = 0.0;

    for (var p = g * WG + lid; p < pixels; p += params.groups * WG) {
        // Online softmax over the class axis. With m the running max:
        //   s    = sum_k exp(x_k - m)                   (all classes)
        //   s_nb = sum_{k != bg} exp(x_k - m)
        //   t_nb = sum_{k != bg} exp(x_k - m) (x_k - m)
        // A new max m' rescales all three by c = exp(m - m'), and t_nb gains (m - m') s_nb.
        // Then H = -sum_{k != bg} p_k log p_k = log(s) s_nb / s - t_nb / s, conf = 1 / s.
        var m = logits[image_base + p];
        var arg = 0u;
        var s = 1.0;
        var s_nb = select(1.0, 0.0, params.background == 0u);
        var t_nb = 0.0;
        for (var k = 1u; k < classes; k++) {
            let x = logits[image_base + k * pixels + p];
            let grows = x > m;
            let q = exp(-abs(x - m));            // the one exp per logit
            let c = select(1.0, q, grows);       // rescale of the old sums
            let e = select(q, 1.0, grows);       // exp(x - new max)
            let new_m = max(m, x);
            let shift = m - new_m;               // <= 0
            t_nb = c * (t_nb + shift * s_nb);
            s_nb = c * s_nb;
            s = c * s + e;
            if (k != params.background) {
                s_nb += e;
                t_nb += e * (x - new_m);
            }
            arg = select(arg, k, grows);
            m = new_m;
        }
        let out = b * pixels + p;
        labels[out] = i32(arg);
        confidence[out] = 1.0 / s;

        var valid = true;
        if (params.has_mask != 0u) {
            valid = mask[out] > 0.5;
        }
        if (valid) {
            entropy_sum += (log(s) * s_nb - t_nb) / s;
            valid_count += 1.0;
        }
    }

    sum_shared[lid] = entropy_sum;
    count_shared[lid] = valid_count;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            sum_shared[lid] += sum_shared[lid + stride];
            count_shared[lid] += count_shared[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let at = (b * params.groups + g) * 2u;
        partials[at] = sum_shared[0];
        partials[at + 1u] = count_shared[0];
    }
}
