//! Shared test helpers: the process's GPU, the `s5` binary, seeded random data, error
//! measures.

use std::process::Command;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use burn::tensor::{Device, Tensor, TensorData};

/// A hung GPU driver must not eat CI's time: the whole binary gets this long. The suite takes
/// about 20 minutes on CI's two cores with lavapipe (more when the machine is busy), and CI
/// has 90 minutes for the build and the tests together.
const WATCHDOG: Duration = Duration::from_secs(45 * 60);

/// The real `s5` binary, run as a user would: without any `S5_*` or `CUBECL_*` variable of
/// the environment the tests run in, nor a job array's index or an MPI launcher's rank
/// (which choose `s5 curate score`'s shard), so a developer's settings cannot change what a
/// test sees (a test that needs one sets it on the command).
pub fn s5() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s5"));
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        let hermetic = [
            "S5_",
            "CUBECL_",
            "SLURM_",
            "JOB_COMPLETION_INDEX",
            "OMPI_COMM_WORLD_",
            "PMI_",
            "MPI_LOCAL",
        ];
        if hermetic.iter().any(|prefix| name_text.starts_with(prefix)) {
            command.env_remove(&name);
        }
    }
    command
}

/// Child processes of the real `s5` binary, as the benchmarks start them.
pub fn children() -> s5::bench::Children {
    s5::bench::Children::new(env!("CARGO_BIN_EXE_s5"), None)
}

/// Runs `command`, which must succeed (its stderr shown otherwise), and parses what it prints
/// on stdout as JSON.
pub fn json_of(command: &mut Command) -> serde_json::Value {
    let out = command.output().expect("run s5");
    assert!(
        out.status.success(),
        "{:?}: {}",
        command.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Held by every test that seeds the device RNG and then draws from it (model weights): the
/// tests of this binary run in parallel on one device, so another test's model made in
/// between would take draws and make two seeded models differ. Tests that only need some
/// weights hold it while they draw theirs, so that they never come between.
pub fn device_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The GPU every test uses (initialised once per process).
pub fn device() -> Device {
    static WATCHDOG_ONCE: Once = Once::new();
    WATCHDOG_ONCE.call_once(|| {
        std::thread::spawn(|| {
            std::thread::sleep(WATCHDOG);
            // Straight to the process's stderr: `eprintln!` in a thread a test spawned goes to
            // that test's captured output, which is lost when the process exits.
            let message = format!(
                "test binary still running after {} minutes: a GPU call hung (or the machine \
                 is far slower than CI's); aborting with exit status 3\n",
                WATCHDOG.as_secs() / 60
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), message.as_bytes());
            std::process::exit(3);
        });
    });
    match s5::device::gpu(None) {
        Ok(gpu) => gpu.device.clone(),
        Err(e) => panic!(
            "{e}\nThe tests run on a real wgpu adapter. Without a GPU install lavapipe: \
             `apt-get install mesa-vulkan-drivers` (Debian/Ubuntu), then run the tests again."
        ),
    }
}

/// The facts of the adapter every test runs on (what adapter-dependent assertions read:
/// `device_type` — "Cpu" for a software adapter such as lavapipe — and `shader_f16`).
pub fn adapter() -> s5::device::AdapterSummary {
    device();
    s5::device::gpu(None).expect("initialised").adapter.clone()
}

/// Whether this adapter computes in f16, checked against its `shader-f16` fact; the f16 kernel
/// tests have nothing to compare without it and say so.
pub fn f16_adapter() -> bool {
    let f16 = s5::model::half::supports_f16(&device());
    assert_eq!(f16, adapter().shader_f16);
    if !f16 {
        eprintln!("this adapter has no shader-f16: the f16 kernels cannot run here");
    }
    f16
}

/// `out` is `s5 ... --f16` on an adapter without `shader-f16`: it must fail with the error
/// that says so, naming the way out.
pub fn assert_f16_refused(out: &std::process::Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("has no `shader-f16`")
            && err.contains("without --f16"),
        "--f16 on an adapter without shader-f16: {err}"
    );
}

/// A small seeded generator (xorshift64*) so failures can be replayed with `S5_TEST_SEED`.
pub struct Rng(u64);

impl Rng {
    /// Fresh seed per call (time-based) unless `S5_TEST_SEED` is set; the seed is printed.
    pub fn fresh(test: &str) -> Self {
        let seed = std::env::var("S5_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: S5_TEST_SEED={seed}");
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately normal (sum of uniforms), scaled.
    pub fn normal(&mut self, std: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * std * (3.0f32).sqrt()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn tensor<const D: usize>(
        &mut self,
        shape: [usize; D],
        std: f32,
        device: &Device,
    ) -> Tensor<D> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| self.normal(std)).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// Panics unless every value of `values` is finite, naming `what`, the side and the index:
/// a comparison must never pass because a NaN or an infinity fell out of it.
pub fn assert_finite(what: &str, side: &str, values: &[f32]) {
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        panic!(
            "{what}: {side} holds {v} at index {i} (of {})",
            values.len()
        );
    }
}

/// max |a − b| over two equally long lists, both sides finite (checked first, so a NaN or
/// inf on either side fails instead of vanishing in the fold).
pub fn max_abs_diff(what: &str, a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    assert_finite(what, "the first side", a);
    assert_finite(what, "the second side", b);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// max |v| of a finite list (checked).
pub fn max_abs(what: &str, values: &[f32]) -> f32 {
    assert_finite(what, "the list", values);
    values.iter().map(|v| v.abs()).fold(0.0f32, f32::max)
}

/// max |a - b| / max |b|: the norm-wise relative error the parity tests bound. A NaN or inf
/// on either side fails.
pub fn rel_err<const D: usize>(actual: Tensor<D>, expected: Tensor<D>) -> f32 {
    assert_eq!(actual.dims(), expected.dims(), "shape mismatch");
    let a = to_vec(actual);
    let b = to_vec(expected);
    let diff = max_abs_diff("rel_err (actual, expected)", &a, &b);
    diff / max_abs("rel_err expected", &b).max(1e-6)
}

/// Parity bound from the issue.
pub const TOLERANCE: f32 = 1e-4;

pub fn assert_close<const D: usize>(what: &str, actual: Tensor<D>, expected: Tensor<D>) {
    let err = rel_err(actual, expected);
    assert!(
        err < TOLERANCE,
        "{what}: relative error {err:e} >= {TOLERANCE:e}"
    );
}

/// A small deterministic segmentor (32-d ViT, 2 heads, `depth` blocks, 8-channel decoder, no
/// dropout or drop path) for tests that need a whole model quickly.
pub fn small_segmentor(depth: usize, classes: usize) -> s5::model::SegmentorConfig {
    let mut backbone = s5::model::VitConfig::vit_tiny();
    backbone.dim = 32;
    backbone.heads = 2;
    backbone.depth = depth;
    backbone.drop_path = 0.0;
    backbone.feature_blocks = [0, 1, 2, 3].map(|i: usize| i.min(depth - 1));
    let mut cfg = s5::model::SegmentorConfig::new(backbone, vec![classes]);
    cfg.decoder_channels = 8;
    cfg.head_dropout = 0.0;
    cfg
}

/// Asserts that two lists of per-parameter gradients (in visiting order) agree as
/// `allclose` does, in L2 norms: for each parameter,
/// ‖got − want‖₂ ≤ `rtol`·‖want‖₂ + `atol`·(the largest ‖want‖₂ of all parameters).
/// The absolute part covers gradients that are small sums of large terms of both signs
/// (LayerNorm scales, the cls token) and those that are structurally zero (a convolution
/// bias that a BatchNorm cancels: rounding noise alone), whose relative error is noise.
pub fn assert_grads_allclose(
    what: &str,
    got: &[Vec<f32>],
    want: &[Vec<f32>],
    rtol: f64,
    atol: f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: parameter count");
    assert!(!got.is_empty(), "{what}: no gradients");
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let largest = want.iter().map(|w| norm(w)).fold(0.0, f64::max);
    assert!(largest > 0.0, "{what}: all gradients are zero");
    let mut worst = (0.0f64, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let at = format!("{what}: parameter {i} ({} values)", w.len());
        max_abs_diff(&at, g, w); // lengths, and finite on both sides
        let diff: Vec<f32> = g.iter().zip(w).map(|(a, b)| a - b).collect();
        let (diff, bound) = (norm(&diff), rtol * norm(w) + atol * largest);
        assert!(
            diff <= bound,
            "{at}: gradients differ by {diff:.4e} (L2), above {bound:.4e} \
             ({rtol} of its norm {:.4e} + {atol} of the largest, {largest:.4e})",
            norm(w)
        );
        if diff / bound > worst.0 {
            worst = (diff / bound, i);
        }
    }
    eprintln!(
        "{what}: the closest call is parameter {} at {:.2} of its bound",
        worst.1, worst.0
    );
}

/// Asserts that two lists of per-parameter gradients (in visiting order) agree: for each
/// parameter, max |got − want| / max |want| below `tolerance`.
pub fn assert_grads_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{what}: parameter count");
    assert!(!got.is_empty(), "{what}: no gradients");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let at = format!("{what}: parameter {i}");
        let scale = max_abs(&at, w).max(1e-6);
        let diff = max_abs_diff(&at, g, w);
        assert!(
            diff / scale < tolerance,
            "{at}: gradient differs by {}",
            diff / scale
        );
    }
}
