{{ enable }}
// pixel_stats: one pass over segmentation logits (online softmax, each logit read once).
//
// Per pixel: argmax class (the FixMatch pseudo-label) and its softmax probability (the
// confidence). Per invocation: the sum of pixel entropies (paper Eq. 1) over its valid pixels
// and their number, written as partials that `pixel_stats_reduce.wgsl` turns into a per-image
// mean with a workgroup tree reduction. No float atomics, and no barrier in this pass: on
// CPU adapters such as lavapipe a barrier turns every SIMD chunk into a coroutine.
//
// Each invocation handles LANES adjacent pixels at once: `{{ lanes }}` is 4 (vec4 loads and
// math) when H * W is a multiple of 4, else 1. All indices below count LANES-pixel units.
//
// The logits are stored as L: F itself, or (the variants that enable f16) its f16 twin,
// converted to f32 as they are read, so the softmax, its sums and the entropy are f32.
//
// Shapes:  logits [B, K, H, W] (contiguous), mask [B, H, W] f32 (1 = valid), not read when
//          has_mask == 0, labels [B, H, W] i32, confidence [B, H, W] f32,
//          partials [B, G * WG, 2] = (entropy sum, valid count) per invocation.
// Dispatch: (G, B, 1) workgroups of WG invocations; pixel units are visited grid-stride.

const WG: u32 = {{ workgroup_size }}u;
const NO_BACKGROUND: u32 = 0xffffffffu;

alias F = {{ float_type }};   // f32 or vec4<f32>
alias L = {{ load_type }};    // F, or its f16 twin
alias I = {{ int_type }};     // i32 or vec4<i32>
alias U = {{ uint_type }};    // u32 or vec4<u32>

fn horizontal_sum(v: F) -> f32 {
    return {{ horizontal_sum }};
}

struct Params {
    classes: u32,
    units: u32,      // H * W / LANES
    groups: u32,     // G: workgroups per image
    has_mask: u32,
    background: u32, // class whose p log p term is left out, or NO_BACKGROUND
}

// Every binding is read_write: cubecl sub-allocates tensors from shared wgpu buffers, and a
// buffer bound read-only and read-write in one dispatch is a wgpu usage conflict.
@group(0) @binding(0) var<storage, read_write> logits: array<L>;
@group(0) @binding(1) var<storage, read_write> mask: array<F>;
@group(0) @binding(2) var<storage, read_write> params: Params;
@group(0) @binding(3) var<storage, read_write> labels: array<I>;
@group(0) @binding(4) var<storage, read_write> confidence: array<F>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = wid.x;
    let b = wid.y;
    let classes = params.classes;
    let units = params.units;
    let image_base = b * classes * units;
    let zero = F(0.0);
    let one = F(1.0);

    var entropy_sum = zero;
    var valid_count = zero;

    for (var p = g * WG + lid; p < units; p += params.groups * WG) {
        // Online softmax over the class axis. With m the running max:
        //   s    = sum_k exp(x_k - m)                   (all classes)
        //   s_nb = sum_{k != bg} exp(x_k - m)
        //   t_nb = sum_{k != bg} exp(x_k - m) (x_k - m)
        // A new max m' rescales all three by c = exp(m - m'), and t_nb gains (m - m') s_nb.
        // Then H = -sum_{k != bg} p_k log p_k = log(s) s_nb / s - t_nb / s, conf = 1 / s.
        var m = F(logits[image_base + p]);
        var arg = U(0u);
        var s = one;
        var s_nb = select(one, zero, params.background == 0u);
        var t_nb = zero;
        for (var k = 1u; k < classes; k++) {
            let x = F(logits[image_base + k * units + p]);
            let grows = x > m;
            let q = exp(-abs(x - m));            // the one exp per logit
            let c = select(one, q, grows);       // rescale of the old sums
            let e = select(q, one, grows);       // exp(x - new max)
            let new_m = max(m, x);
            t_nb = c * (t_nb + (m - new_m) * s_nb);
            s_nb = c * s_nb;
            s = c * s + e;
            if (k != params.background) {
                s_nb += e;
                t_nb += e * (x - new_m);
            }
            arg = select(arg, U(k), grows);
            m = new_m;
        }
        let out = b * units + p;
        labels[out] = I(arg);
        confidence[out] = one / s;

        var valid = one;
        if (params.has_mask != 0u) {
            valid = select(zero, one, mask[out] > F(0.5));
        }
        entropy_sum += valid * ((log(s) * s_nb - t_nb) / s);
        valid_count += valid;
    }

    let at = (b * params.groups * WG + g * WG + lid) * 2u;
    partials[at] = horizontal_sum(entropy_sum);
    partials[at + 1u] = horizontal_sum(valid_count);
}
