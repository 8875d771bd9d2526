//! GPU adapter choice and `s5 info`: the one place that picks a backend.
//!
//! s5 runs on whatever wgpu offers: Vulkan, Metal, DX12 or GL. [`gpu`] initialises burn's wgpu
//! runtime once per process, on the backend named by `--backend` / `S5_BACKEND` or, without
//! one, wgpu's automatic choice (a discrete or integrated GPU first, a software adapter such as
//! lavapipe last). `CUBECL_WGPU_DEFAULT_DEVICE` (e.g. `DiscreteGpu(1)`, `Cpu`) picks among
//! several adapters of one backend. [`training_gpus`] adds a burn device per further GPU for
//! data-parallel training. Where an MPI launcher starts several ranks on one node, each rank
//! opens its own GPUs of the node ([`crate::distributed::node`]).

use std::sync::{Mutex, OnceLock};

use burn::backend::wgpu::{WgpuBackend, WgpuInitError};
use burn::tensor::Device;

use crate::distributed::node::{self, LocalPlace, NodeAdapter, RankGpus};
use crate::error::{Error, Result};

/// Environment variable naming the GPU backend when `--backend` is not given.
pub const BACKEND_ENV: &str = "S5_BACKEND";

/// What to install when no adapter exists, per platform.
pub const NO_ADAPTER_HINT: &str = if cfg!(target_os = "linux") {
    "Install a Vulkan driver: your GPU vendor's, or Mesa's (`apt-get install mesa-vulkan-drivers` \
     on Debian/Ubuntu, which includes the lavapipe software adapter that works without a GPU). \
     `s5 info` lists what wgpu sees."
} else if cfg!(target_os = "macos") {
    "Metal should always be present on macOS 10.15+; check that the process may access the GPU. \
     `s5 info` lists what wgpu sees."
} else {
    "Install or update your GPU driver (DX12 or Vulkan). `s5 info` lists what wgpu sees."
};

/// A graphics API wgpu can run s5's WGSL kernels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuBackend {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl GpuBackend {
    /// Parses `vulkan`, `metal`, `dx12` or `gl` (any case).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Ok(Self::Vulkan),
            "metal" | "mtl" => Ok(Self::Metal),
            "dx12" | "d3d12" => Ok(Self::Dx12),
            "gl" | "gles" | "opengl" => Ok(Self::Gl),
            _ => Err(Error::UnknownBackend(name.to_string())),
        }
    }

    /// The backend named by `explicit`, else by `S5_BACKEND`, else none (automatic).
    pub fn resolve(explicit: Option<Self>) -> Result<Option<Self>> {
        match explicit {
            Some(b) => Ok(Some(b)),
            None => match std::env::var(BACKEND_ENV) {
                Ok(name) if !name.trim().is_empty() && name.trim() != "auto" => {
                    Self::parse(&name).map(Some)
                }
                _ => Ok(None),
            },
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Vulkan => "vulkan",
            Self::Metal => "metal",
            Self::Dx12 => "dx12",
            Self::Gl => "gl",
        }
    }

    fn wgpu_backends(self) -> wgpu::Backends {
        match self {
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }

    fn burn_backend(self) -> WgpuBackend {
        match self {
            Self::Vulkan => WgpuBackend::Vulkan,
            Self::Metal => WgpuBackend::Metal,
            Self::Dx12 => WgpuBackend::Dx12,
            Self::Gl => WgpuBackend::Gl,
        }
    }
}

/// Set to make s5 treat every adapter as one without `shader-f16`, to see what a user of
/// such an adapter sees (the tests of the refusals use it).
pub const HIDE_SHADER_F16_VAR: &str = "S5_HIDE_SHADER_F16";

/// Whether [`HIDE_SHADER_F16_VAR`] is set.
pub fn shader_f16_hidden() -> bool {
    std::env::var_os(HIDE_SHADER_F16_VAR).is_some()
}

/// The name of the process's adapter ([`gpu`]), for messages.
pub fn adapter_name() -> String {
    GPU.get().map_or_else(
        || "this adapter".to_string(),
        |gpu| gpu.adapter.name.clone(),
    )
}

/// What `s5 info` prints about one adapter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_storage_buffer_binding_bytes: u64,
    pub subgroups: bool,
    pub subgroup_size_min: u32,
    pub subgroup_size_max: u32,
    pub shader_f16: bool,
    pub timestamp_queries: bool,
}

impl AdapterSummary {
    pub fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        Self {
            name: info.name,
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_storage_buffer_binding_bytes: limits.max_storage_buffer_binding_size,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_size_min: info.subgroup_min_size,
            subgroup_size_max: info.subgroup_max_size,
            shader_f16: features.contains(wgpu::Features::SHADER_F16) && !shader_f16_hidden(),
            timestamp_queries: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        }
    }
}

impl AdapterSummary {
    /// A CPU adapter: software Vulkan (lavapipe), WARP, llvmpipe.
    pub fn is_cpu(&self) -> bool {
        self.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }
}

/// Every adapter wgpu sees on the given backend (all backends when `None`).
pub fn list_adapters(backend: Option<GpuBackend>) -> Vec<AdapterSummary> {
    adapters(backend.map_or(wgpu::Backends::all(), GpuBackend::wgpu_backends))
}

fn adapters(backends: wgpu::Backends) -> Vec<AdapterSummary> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(AdapterSummary::of)
        .collect()
}

/// wgpu's automatic choice, made explicit: the API of the first hardware adapter among
/// Vulkan, Metal and DX12, else of the first software one, else GL (probed last).
fn auto_backend() -> Option<GpuBackend> {
    let primary = adapters(wgpu::Backends::PRIMARY);
    let pick = primary
        .iter()
        .find(|a| a.device_type != "Cpu")
        .or(primary.first())
        .and_then(|a| GpuBackend::parse(&a.backend).ok());
    pick.or_else(|| (!adapters(wgpu::Backends::GL).is_empty()).then_some(GpuBackend::Gl))
}

/// The process's GPU: burn's device and the adapter it runs on.
#[derive(Debug, Clone)]
pub struct Gpu {
    pub device: Device,
    pub adapter: AdapterSummary,
    /// The backend that was asked for; `None` when s5 chose automatically.
    pub backend: Option<GpuBackend>,
    /// The wgpu instance and adapter under `device`: further devices of a data-parallel run
    /// come from the same instance ([`training_gpus`]).
    handles: Option<(wgpu::Instance, wgpu::Adapter)>,
    /// Where the process is one of several MPI ranks on its node: its place and GPUs.
    pub placement: Option<Placement>,
}

/// The GPUs of an MPI rank that shares its node with other ranks.
#[derive(Debug, Clone)]
pub struct Placement {
    pub place: LocalPlace,
    /// The node's GPUs of the chosen API, in the order ranks take them ([`node::node_gpus`]);
    /// empty where the node has only software adapters, which its ranks share.
    node: Vec<wgpu::Adapter>,
    /// The positions in `node` this rank takes (`None` with `node` empty).
    pub gpus: Option<RankGpus>,
    /// The instance `node` was enumerated on.
    instance: wgpu::Instance,
}

impl Placement {
    /// One line for `s5 info`: the rank's place and the GPUs it takes.
    pub fn describe(&self) -> String {
        let who = format!(
            "local rank {} of {} on this node ({})",
            self.place.rank, self.place.size, self.place.source
        );
        match self.gpus {
            None => format!("{who}: no hardware GPU here, the node's ranks share the adapter"),
            Some(gpus) => {
                let names: Vec<String> = (gpus.first..gpus.first + gpus.count)
                    .map(|i| format!("{} ({})", i, self.node[i].get_info().name))
                    .collect();
                let shared = if gpus.shared {
                    ", shared with other ranks of the node"
                } else {
                    ""
                };
                let noun = if gpus.count == 1 { "GPU" } else { "GPUs" };
                format!(
                    "{who}: {noun} {} of the node's {}{shared}",
                    names.join(", "),
                    self.node.len()
                )
            }
        }
    }
}

static GPU: OnceLock<Gpu> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Initialises burn's wgpu runtime once for this process and returns it.
///
/// `backend` (or `S5_BACKEND`) pins a graphics API; otherwise wgpu chooses. A later call with
/// a different backend is an error: a process runs on one GPU runtime. A failed attempt is
/// not cached.
pub fn gpu(backend: Option<GpuBackend>) -> Result<&'static Gpu> {
    gpu_with(backend, None)
}

/// [`gpu`], where the process is one of several MPI ranks on its node and each rank takes
/// `per_rank` GPUs (`None`: an equal share of the node's): its first GPU.
fn gpu_with(backend: Option<GpuBackend>, per_rank: Option<usize>) -> Result<&'static Gpu> {
    let backend = GpuBackend::resolve(backend)?;
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let gpu = match GPU.get() {
        Some(gpu) => gpu,
        None => {
            let gpu = init(backend, per_rank)?;
            GPU.get_or_init(|| gpu)
        }
    };
    if backend.is_some() && gpu.backend != backend {
        return Err(Error::BackendConflict {
            current: gpu.backend.map_or("auto", GpuBackend::name).to_string(),
            requested: backend.map_or("auto", GpuBackend::name).to_string(),
        });
    }
    Ok(gpu)
}

/// Whether the process's GPU ([`gpu`]) is initialised and is a CPU adapter (lavapipe, WARP,
/// llvmpipe), where kernels prefer registers and caches to workgroup memory and barriers.
pub fn runs_on_cpu_adapter() -> bool {
    GPU.get().is_some_and(|gpu| gpu.adapter.is_cpu())
}

/// The `moe_ffn` tiling for the process's GPU ([`gpu`]): register tiles on a CPU adapter,
/// workgroup tiles elsewhere (and before any GPU was initialised).
pub fn moe_kernel() -> crate::kernels::MoeKernel {
    crate::kernels::MoeKernel::for_adapter(runs_on_cpu_adapter())
}

fn init(backend: Option<GpuBackend>, per_rank: Option<usize>) -> Result<Gpu> {
    // Ask wgpu first: cubecl panics deep inside when there is no adapter at all. Then pin the
    // API ourselves, so the choice is the documented one and GL is only probed as a last resort.
    let api = match backend {
        Some(b) if adapters(b.wgpu_backends()).is_empty() => None,
        Some(b) => Some(b),
        None => auto_backend(),
    };
    let Some(api) = api else {
        return Err(Error::NoAdapter {
            backend: backend.map(|b| b.name().to_string()),
            hint: NO_ADAPTER_HINT,
        });
    };
    let placement = match node::local_place(&|name| std::env::var(name).ok())? {
        Some(place) => Some(place_rank(api, place, per_rank)?),
        None => None,
    };
    if let Some(placement) = placement.as_ref().filter(|p| p.gpus.is_some()) {
        return open_placed(backend, placement.clone());
    }
    let options = Device::wgpu_options().graphics_api(api.burn_backend());
    let (device, setup) = options
        .init_with_setup()
        .map_err(|e: WgpuInitError| Error::DeviceInit(format!("{e}")))?;
    Ok(Gpu {
        device,
        adapter: AdapterSummary::of(&setup.adapter),
        backend,
        handles: Some((setup.instance, setup.adapter)),
        placement,
    })
}

/// The node's GPUs of `api` and those of them this rank takes.
fn place_rank(api: GpuBackend, place: LocalPlace, per_rank: Option<usize>) -> Result<Placement> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = api.wgpu_backends();
    let instance = wgpu::Instance::new(desc);
    let all = pollster::block_on(instance.enumerate_adapters(api.wgpu_backends()));
    let infos: Vec<wgpu::AdapterInfo> = all.iter().map(wgpu::Adapter::get_info).collect();
    let software_counts = std::env::var_os(node::PLACE_ON_SOFTWARE_VAR).is_some();
    let facts: Vec<NodeAdapter> = infos
        .iter()
        .map(|info| NodeAdapter {
            discrete: info.device_type == wgpu::DeviceType::DiscreteGpu,
            software: info.device_type == wgpu::DeviceType::Cpu && !software_counts,
            bus_id: &info.device_pci_bus_id,
        })
        .collect();
    let node: Vec<wgpu::Adapter> = node::node_gpus(&facts)
        .into_iter()
        .map(|i| all[i].clone())
        .collect();
    let gpus = match node.len() {
        0 => None,
        n => Some(node::rank_gpus(n, place, per_rank)?),
    };
    Ok(Placement {
        place,
        node,
        gpus,
        instance,
    })
}

/// The first GPU of a placed rank, on the instance its node's GPUs were enumerated on.
fn open_placed(backend: Option<GpuBackend>, placement: Placement) -> Result<Gpu> {
    let first = placement.gpus.map_or(0, |g| g.first);
    let adapter = placement.node[first].clone();
    let instance = placement.instance.clone();
    let mut gpu = open_device(&instance, &adapter, backend)?;
    gpu.handles = Some((instance, adapter));
    gpu.placement = Some(placement);
    Ok(gpu)
}

/// Which GPUs a training run spreads its batch over (data parallelism, see
/// [`crate::train::parallel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuChoice {
    /// The chosen adapter and every other adapter of its API with the same name (identical
    /// GPUs): one GPU on most machines, all of them on a multi-GPU node.
    #[default]
    Auto,
    /// Exactly this many adapters: the chosen one first, then others of its API (identical
    /// ones first, software adapters never). Fewer present is an error.
    Count(usize),
    /// This many devices on the chosen adapter itself: the data-parallel code path without a
    /// second GPU, for tests and CI (no speed-up).
    SameAdapter(usize),
}

impl GpuChoice {
    /// Parses `auto` or a count ≥ 1.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        match text.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Self::Count(n)),
            _ => Err(format!("`{text}`: expected `auto` or a number of GPUs ≥ 1")),
        }
    }
}

/// Devices made for data parallelism, kept for the process (a runtime is never unregistered):
/// (adapter key, copy number) → GPU.
static EXTRA: Mutex<Vec<((String, usize), Gpu)>> = Mutex::new(Vec::new());

/// The GPUs of a training run: the process's GPU ([`gpu`]) first, then the others `choice`
/// names, each with its own burn device.
pub fn training_gpus(backend: Option<GpuBackend>, choice: GpuChoice) -> Result<Vec<Gpu>> {
    let per_rank = match choice {
        GpuChoice::Auto => None,
        GpuChoice::Count(n) => Some(n),
        GpuChoice::SameAdapter(_) => Some(1),
    };
    let main = gpu_with(backend, per_rank)?;
    let Some((instance, adapter)) = &main.handles else {
        return Ok(vec![main.clone()]);
    };
    let placed = main.placement.as_ref().filter(|p| p.gpus.is_some());
    let others: Vec<wgpu::Adapter> = match (choice, placed) {
        (GpuChoice::SameAdapter(n), _) => vec![adapter.clone(); n.saturating_sub(1)],
        (_, Some(placement)) => placement.others(per_rank)?,
        (_, None) => others_of_api(instance, adapter, choice)?,
    };
    let mut gpus = vec![main.clone()];
    let mut extra = EXTRA
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (i, other) in others.iter().enumerate() {
        let other_info = other.get_info();
        let copy = if matches!(choice, GpuChoice::SameAdapter(_)) {
            i + 1
        } else {
            0
        };
        let key = (
            format!(
                "{}/{}/{}",
                other_info.name, other_info.device_pci_bus_id, other_info.device
            ),
            copy,
        );
        if let Some((_, gpu)) = extra.iter().find(|(k, _)| *k == key) {
            gpus.push(gpu.clone());
            continue;
        }
        let gpu = open_device(instance, other, main.backend)?;
        extra.push((key, gpu.clone()));
        gpus.push(gpu);
    }
    Ok(gpus)
}

/// The GPUs besides `adapter` that `choice` (`Auto` or `Count`) names, in the order they
/// join: others of its API, identical ones first, software adapters never.
fn others_of_api(
    instance: &wgpu::Instance,
    adapter: &wgpu::Adapter,
    choice: GpuChoice,
) -> Result<Vec<wgpu::Adapter>> {
    let info = adapter.get_info();
    let mut others: Vec<wgpu::Adapter> =
        pollster::block_on(instance.enumerate_adapters(info.backend.into()))
            .into_iter()
            .filter(|a| {
                let other = a.get_info();
                other != info && other.device_type != wgpu::DeviceType::Cpu
            })
            .collect();
    // Identical GPUs first.
    others.sort_by_key(|a| a.get_info().name != info.name);
    match choice {
        GpuChoice::Count(n) => {
            if others.len() + 1 < n {
                let mut found = vec![format!("{} (chosen)", info.name)];
                found.extend(others.iter().map(|a| a.get_info().name));
                return Err(Error::NotEnoughGpus {
                    asked: n,
                    api: format!("{:?}", info.backend).to_lowercase(),
                    found: found.join(", "),
                });
            }
            others.truncate(n - 1);
            Ok(others)
        }
        _ => Ok(others
            .into_iter()
            .filter(|a| a.get_info().name == info.name)
            .collect()),
    }
}

impl Placement {
    /// The rank's GPUs after its first, when each rank takes `per_rank`; an error where its
    /// first GPU, opened before, is not the first of those.
    fn others(&self, per_rank: Option<usize>) -> Result<Vec<wgpu::Adapter>> {
        let pick = node::rank_gpus(self.node.len(), self.place, per_rank)?;
        let opened = self.gpus.map_or(0, |g| g.first);
        if pick.first != opened {
            return Err(Error::Config {
                reason: format!(
                    "this rank opened GPU {opened} of its node before it knew how many GPUs                      each rank takes; asked for {} GPUs per rank it would start at GPU {}.                      Ask for the GPUs (--gpus) in the first command of the process",
                    pick.count, pick.first
                ),
            });
        }
        Ok(self.node[pick.first + 1..pick.first + pick.count].to_vec())
    }
}

/// A burn device of its own on `adapter`, requested as burn requests its first one (every
/// feature the adapter has, its own limits).
fn open_device(
    instance: &wgpu::Instance,
    adapter: &wgpu::Adapter,
    backend: Option<GpuBackend>,
) -> Result<Gpu> {
    let (device, queue) = pollster::block_on(
        adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("s5 data-parallel replica"),
            required_features: adapter
                .features()
                .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
            required_limits: adapter.limits(),
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            ..wgpu::DeviceDescriptor::default()
        }),
    )
    .map_err(|e| Error::DeviceInit(format!("{}: {e}", adapter.get_info().name)))?;
    let setup = burn::backend::wgpu::WgpuSetup {
        instance: instance.clone(),
        adapter: adapter.clone(),
        device,
        queue,
        backend: adapter.get_info().backend,
    };
    let device = Device::wgpu_options()
        .setup(setup)
        .init()
        .map_err(|e: WgpuInitError| Error::DeviceInit(format!("{e}")))?;
    Ok(Gpu {
        device,
        adapter: AdapterSummary::of(adapter),
        backend,
        handles: None,
        placement: None,
    })
}
