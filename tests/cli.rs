//! The real `s5` binary, run as a user would.

use std::process::Command;

fn s5() -> Command {
    Command::new(env!("CARGO_BIN_EXE_s5"))
}

#[test]
fn info_lists_the_selected_adapter() {
    let out = s5().arg("info").output().expect("run s5");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "s5 info failed ({}): {}\nWithout a GPU install `mesa-vulkan-drivers`.",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("s5 will use"), "{stdout}");
    assert!(stdout.contains("workgroup storage"), "{stdout}");
}

#[test]
fn info_without_any_driver_explains_and_exits_2() {
    // Hide every Vulkan ICD and every EGL vendor (the GL fallback).
    for extra in [&[][..], &["--backend", "vulkan"][..]] {
        let out = s5()
            .arg("info")
            .args(extra)
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")
            .env_remove("S5_BACKEND")
            .output()
            .expect("run s5");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "args {extra:?}: {stderr}");
        assert!(stderr.contains("no GPU adapter"), "{stderr}");
        assert!(stderr.contains("mesa-vulkan-drivers"), "{stderr}");
    }
}

#[test]
fn unknown_backend_in_env_is_a_clear_error() {
    let out = s5()
        .arg("info")
        .env("S5_BACKEND", "cuda")
        .output()
        .expect("run s5");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("unknown GPU backend `cuda`"), "{stderr}");
}

#[test]
fn bench_kernels_prints_ratios() {
    let out = s5()
        .args([
            "bench", "kernels", "--tiny", "--warmup", "0", "--reps", "1", "--json",
        ])
        .output()
        .expect("run s5");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = doc["rows"].as_array().expect("rows");
    let name_of = |r: &serde_json::Value| r["name"].as_str().unwrap_or_default().to_string();
    for name in [
        "pixel_stats (WGSL)",
        "moe_ffn (WGSL, workgroup tiles)",
        "moe_ffn (WGSL, register tiles)",
    ] {
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|r| name_of(r).starts_with(name))
            .filter_map(|r| r["ratio"].as_f64())
            .collect();
        assert_eq!(ratios.len(), 2, "{name}: two baselines");
        assert!(
            ratios.iter().all(|r| r.is_finite() && *r > 0.0),
            "{name}: {ratios:?}"
        );
    }
    // The tiling `moe_ffn` picks on this adapter is marked, on its two rows.
    let auto = rows
        .iter()
        .filter(|r| name_of(r).ends_with("[auto]"))
        .count();
    assert_eq!(auto, 2, "one moe_ffn tiling marked [auto]");
}
