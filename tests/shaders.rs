//! Every shader, as rendered for the runtime, is parsed and validated by naga and translated
//! to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12).

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use s5::kernels::shader::SHADERS;

fn validated(name: &str, source: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: WGSL does not parse:\n{}", e.emit_to_string(source)));
    // Default capabilities: nothing beyond what every WebGPU implementation offers.
    let info = Validator::new(ValidationFlags::all(), Capabilities::default())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: invalid WGSL:\n{}", e.emit_to_string(source)));
    (module, info)
}

#[test]
fn every_shader_has_a_compute_entry_point_named_main() {
    assert!(!SHADERS.is_empty());
    for shader in SHADERS {
        let (module, _) = validated(shader.name, &shader.render());
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
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(shader.file);
        let on_disk = std::fs::read_to_string(&path).expect("shader file listed in SHADERS");
        assert_eq!(
            on_disk, shader.template,
            "{}: registry out of date",
            shader.file
        );
        assert!(
            !shader.render().contains("{{"),
            "{}: unfilled placeholder",
            shader.name
        );
    }
}

#[test]
fn every_shader_translates_to_spirv() {
    for shader in SHADERS {
        let (module, info) = validated(shader.name, &shader.render());
        let words = spv::write_vec(&module, &info, &spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("{}: SPIR-V: {e}", shader.name));
        assert_eq!(words[0], 0x0723_0203, "{}: SPIR-V magic", shader.name);
    }
}

#[test]
fn every_shader_translates_to_msl() {
    for shader in SHADERS {
        let (module, info) = validated(shader.name, &shader.render());
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
        let (module, info) = validated(shader.name, &shader.render());
        let options = hlsl::Options {
            fake_missing_bindings: true,
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
