//! Every shader, as rendered for the runtime, is parsed and validated by naga and translated
//! to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12).

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use s5::kernels::shader::{SHADERS, Shader};

fn validated(shader: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let (name, source) = (shader.name, &shader.render());
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: WGSL does not parse:\n{}", e.emit_to_string(source)));
    // Default capabilities: nothing beyond what every WebGPU implementation offers, and f16
    // (WebGPU's `shader-f16`) for the shaders that say they need it.
    let capabilities = if shader.f16 {
        Capabilities::default() | Capabilities::SHADER_FLOAT16
    } else {
        Capabilities::default()
    };
    let info = Validator::new(ValidationFlags::all(), capabilities)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: invalid WGSL:\n{}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_shader_has_a_compute_entry_point_named_main() {
    assert!(!SHADERS.is_empty());
    for shader in SHADERS {
        let (module, _) = validated(shader);
        let entry: Vec<_> = module
            .entry_points
            .iter()
            .map(|e| (e.name.as_str(), e.stage))
            .collect();
        assert_eq!(
            entry,
            [("main", naga::ShaderStage::Compute)],
            "{}",
            shader.name
        );
        assert!(
            !shader.render().contains("{{"),
            "{}: unfilled placeholder",
            shader.name
        );
        // A shader reads f16 exactly when it says so (and is then validated with f16).
        assert_eq!(
            shader.render().contains("enable f16;"),
            shader.f16,
            "{}: `enable f16;` and the registry's f16 flag",
            shader.name
        );
    }
}

/// Every `shaders/*.wgsl` file is registered (so it is validated, translated and bound), and
/// every registered file exists.
#[test]
fn every_shader_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.join("shaders"))
        .expect("the shaders folder")
        .map(|e| {
            e.expect("a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".wgsl"))
        .map(|name| format!("shaders/{name}"))
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = SHADERS.iter().map(|s| s.file.to_string()).collect();
    registered.sort();
    registered.dedup();
    assert_eq!(
        on_disk, registered,
        "shaders/*.wgsl and kernels::shader::SHADERS must name the same files"
    );
}

/// `moe_ffn_vec4_regs.wgsl` is generated: it must be what its script writes today.
#[test]
fn the_generated_shader_is_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let out = std::process::Command::new("python3")
        .arg(dir.join("moe_ffn_vec4_regs.py"))
        .arg("--stdout")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): this test regenerates moe_ffn_vec4_regs.wgsl with \
                 its script. Install Python 3 (`apt-get install python3-minimal`)"
            )
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8 WGSL");
    let committed =
        std::fs::read_to_string(dir.join("moe_ffn_vec4_regs.wgsl")).expect("the committed shader");
    assert!(
        generated == committed,
        "shaders/moe_ffn_vec4_regs.wgsl is not what moe_ffn_vec4_regs.py writes: run \
         `python3 shaders/moe_ffn_vec4_regs.py` and commit both"
    );
}

#[test]
fn every_shader_translates_to_spirv() {
    for shader in SHADERS {
        let (module, info) = validated(shader);
        let words = spv::write_vec(&module, &info, &spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", shader.name));
        assert_eq!(words[0], 0x0723_0203, "{}: SPIR-V magic", shader.name);
    }
}

#[test]
fn every_shader_translates_to_msl() {
    for shader in SHADERS {
        let (module, info) = validated(shader);
        let options = msl::Options {
            lang_version: (2, 1),
            ..Default::default()
        };
        let pipeline = msl::PipelineOptions::default();
        let (text, _) = msl::write_string(&module, &info, &options, &pipeline)
            .unwrap_or_else(|e| panic!("{}: MSL: {e}", shader.name));
        assert!(
            text.contains("kernel void"),
            "{}: no MSL kernel",
            shader.name
        );
    }
}

#[test]
fn every_shader_translates_to_hlsl() {
    for shader in SHADERS {
        let (module, info) = validated(shader);
        // f16 needs shader model 6.2 (DXC), what wgpu compiles with where DXC is present.
        let options = hlsl::Options {
            fake_missing_bindings: true,
            shader_model: if shader.f16 {
                hlsl::ShaderModel::V6_2
            } else {
                hlsl::Options::default().shader_model
            },
            ..Default::default()
        };
        let pipeline = hlsl::PipelineOptions::default();
        let mut text = String::new();
        hlsl::Writer::new(&mut text, &options, &pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{}: HLSL: {e}", shader.name));
        assert!(
            text.contains("[numthreads("),
            "{}: no HLSL compute entry",
            shader.name
        );
    }
}
