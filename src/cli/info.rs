//! `s5 info`: every adapter wgpu sees, and the one s5 will use.

use anyhow::Result;
use s5::device::{self, AdapterSummary, GpuBackend};

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(backend: Option<GpuBackend>, args: InfoArgs) -> Result<()> {
    let backend = GpuBackend::resolve(backend)?;
    let all = device::list_adapters(None);
    // Fails with the "how to get an adapter" message (exit code 2) when there is none.
    let chosen = device::gpu(backend)?;
    if args.json {
        let placement = chosen.placement.as_ref().map(|p| p.describe());
        let doc = serde_json::json!({
            "adapters": all,
            "selected": chosen.adapter,
            "placement": placement,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("adapters wgpu sees:");
    for a in &all {
        println!(
            "  - {} [{}] {} ({} {})",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
    }
    let pinned = backend.map_or("automatic".to_string(), |b| {
        format!("pinned to {}", b.name())
    });
    println!("\ns5 will use ({pinned}):");
    print_adapter(&chosen.adapter);
    if let Some(placement) = &chosen.placement {
        println!("  this MPI rank:            {}", placement.describe());
    }
    Ok(())
}

fn print_adapter(a: &AdapterSummary) {
    println!("  name:                     {}", a.name);
    println!("  backend:                  {}", a.backend);
    println!("  device type:              {}", a.device_type);
    println!("  driver:                   {} {}", a.driver, a.driver_info);
    println!(
        "  workgroup storage:        {} KiB",
        a.max_workgroup_storage_bytes / 1024
    );
    println!(
        "  invocations / workgroup:  {}",
        a.max_invocations_per_workgroup
    );
    println!(
        "  storage binding:          {} MiB",
        a.max_storage_buffer_binding_bytes >> 20
    );
    let subgroups = if a.subgroups {
        format!(
            "yes ({}..{} lanes)",
            a.subgroup_size_min, a.subgroup_size_max
        )
    } else {
        "no".to_string()
    };
    println!("  subgroups:                {subgroups}");
    println!("  shader f16:               {}", yes_no(a.shader_f16));
    let mixed = if a.shader_f16 {
        "available (`precision: Mixed`, `--f16`)"
    } else if device::shader_f16_hidden() {
        "not available: S5_HIDE_SHADER_F16 is set"
    } else {
        "not available: this adapter has no shader-f16"
    };
    println!("  mixed precision:          {mixed}");
    println!(
        "  timestamp queries:        {}",
        yes_no(a.timestamp_queries)
    );
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
