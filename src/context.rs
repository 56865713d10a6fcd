//! The device a layer runs on: created here from the environment, or the caller's own.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::plan::PlanLimits;

/// Per-device values of any type, built once (pipelines of layers built on the engine): the
/// context keeps them without knowing what they are.
type Extensions = Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>;

/// Knobs of a [`Context`]. `Default` uses everything the adapter offers.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Caps the storage binding size below the device's (tests use it to exercise chunking).
    pub max_binding_bytes: Option<u64>,
    /// Caps workgroups per grid dimension below the device's (tests use it to exercise 2-D grids).
    pub max_workgroups_per_dim: Option<u32>,
    /// Refuse subgroup operations even where the adapter has them.
    pub disable_subgroups: bool,
    /// The form of the network's convolution kernels: `Some(true)` direct (one thread per
    /// output, no workgroup memory: what CPU adapters run fastest), `Some(false)` tiled
    /// (workgroup-memory tiles: what GPUs run fastest); `None` chooses by the adapter's type.
    /// The direct form also runs a small network's one-workgroup training step on 32 threads
    /// instead of 256 (fewer barriers to switch through on one CPU core).
    pub direct_kernels: Option<bool>,
    /// The backends to choose the adapter from (`None`: `WGPU_BACKEND`, else all): one
    /// context per backend puts several adapters of one machine to work in one process
    /// (see `ThreadGroup`).
    pub backends: Option<wgpu::Backends>,
    /// The adapter whose name contains this (case-insensitive; `None`: `WGPU_ADAPTER_NAME`):
    /// one context per GPU of a machine, e.g. for a `ThreadGroup`. See [`Context::adapters`].
    pub adapter_name: Option<String>,
}

/// A device, its queue, and the batch-norm pipelines compiled for it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Context {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    kernels: Arc<Kernels>,
    limits: PlanLimits,
    direct_kernels: bool,
    lost: Arc<Mutex<Option<String>>>,
    errors: Arc<Mutex<Option<String>>>,
    extensions: Extensions,
}

fn env_adapter_name() -> Option<String> {
    std::env::var("WGPU_ADAPTER_NAME")
        .ok()
        .filter(|s| !s.is_empty())
}

impl Context {
    /// Creates a device on the best adapter, honouring `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
    /// `WGPU_POWER_PREF`, with the adapter's own limits so large tensors fit. Blocks.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async(ContextOptions::default()))
    }

    /// [`Context::new`] with options. Blocks.
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        pollster::block_on(Self::new_async(options))
    }

    /// Every adapter wgpu finds (on `backends`, or all), as (name, backend, device type): what
    /// [`ContextOptions::adapter_name`] and [`ContextOptions::backends`] choose from.
    pub fn adapters(
        backends: Option<wgpu::Backends>,
    ) -> Vec<(String, wgpu::Backend, wgpu::DeviceType)> {
        let backends = backends.unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        pollster::block_on(instance.enumerate_adapters(backends))
            .into_iter()
            .map(|a| {
                let i = a.get_info();
                (i.name, i.backend, i.device_type)
            })
            .collect()
    }

    /// Creates a device asynchronously.
    pub async fn new_async(options: ContextOptions) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(backends) = options.backends {
            desc.backends = backends;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = match options.adapter_name.clone().or_else(env_adapter_name) {
            Some(name) => {
                let wanted = name.to_lowercase();
                let backends = options
                    .backends
                    .or_else(wgpu::Backends::from_env)
                    .unwrap_or(wgpu::Backends::all());
                instance
                    .enumerate_adapters(backends)
                    .await
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
                    .ok_or(Error::NoAdapter(Some(name)))?
            }
            None => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                })
                .await
                .map_err(|_| Error::NoAdapter(None))?,
        };
        // Subgroups speed up the reductions; timestamps let benchmarks read GPU time.
        let wanted = wgpu::Features::SUBGROUP
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-batchnorm"),
                required_features: features,
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = flag.lock() {
                *l = Some(format!("{reason:?}: {message}"));
            }
        });
        // Our own device: an uncaptured error is kept and returned once by the next call as
        // `Error::Gpu` rather than aborting the process. Every input is validated before
        // recording, so these would be bugs or device failures. (Its own slot: an error is
        // not a lost device, and the context stays usable after reporting it.)
        let errors = Arc::new(Mutex::new(None));
        let slot = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e| {
            log::error!("wgpu: {e}");
            if let Ok(mut slot) = slot.lock() {
                slot.get_or_insert_with(|| format!("uncaptured wgpu error: {e}"));
            }
        }));
        Ok(Self::build(
            device,
            queue,
            adapter.get_info(),
            options,
            lost,
            errors,
        ))
    }

    /// Wraps the caller's device and queue. Subgroup operations are used if the device was
    /// created with `Features::SUBGROUP`; large tensors are chunked to the device's limits.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, options: ContextOptions) -> Self {
        let info = device.adapter_info();
        Self::build(
            device,
            queue,
            info,
            options,
            Arc::new(Mutex::new(None)),
            Arc::new(Mutex::new(None)),
        )
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: ContextOptions,
        lost: Arc<Mutex<Option<String>>>,
        errors: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let l = device.limits();
        // Indices inside a chunk are u32 element indices: keep bindings under 4 GiB.
        let mut max_binding = l
            .max_storage_buffer_binding_size
            .min(l.max_buffer_size)
            .min(u32::MAX as u64 & !255);
        if let Some(cap) = options.max_binding_bytes {
            max_binding = max_binding.min(cap);
        }
        let mut max_groups = l.max_compute_workgroups_per_dimension;
        if let Some(cap) = options.max_workgroups_per_dim {
            max_groups = max_groups.min(cap.max(1));
        }
        let subgroups =
            device.features().contains(wgpu::Features::SUBGROUP) && !options.disable_subgroups;
        log::info!(
            "wgpu-batchnorm on {} ({:?}), subgroups: {subgroups}",
            info.name,
            info.backend
        );
        let kernels = Arc::new(Kernels::new(&device, subgroups));
        let direct_kernels = options
            .direct_kernels
            .unwrap_or(info.device_type == wgpu::DeviceType::Cpu);
        Context {
            direct_kernels,
            limits: PlanLimits {
                max_binding,
                offset_alignment: l.min_storage_buffer_offset_alignment as u64,
                max_groups_per_dim: max_groups,
            },
            device,
            queue,
            info,
            kernels,
            lost,
            errors,
            extensions: Extensions::default(),
        }
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter's description.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Whether the network's kernels take their direct form (see
    /// [`ContextOptions::direct_kernels`]).
    pub fn direct_kernels(&self) -> bool {
        self.direct_kernels
    }

    /// Whether the reductions use subgroup operations on this device.
    pub fn uses_subgroups(&self) -> bool {
        self.kernels.subgroups
    }

    /// One line: adapter, backend, device type, subgroups.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {}), subgroups {}",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            if self.info.driver_info.is_empty() {
                "?"
            } else {
                &self.info.driver_info
            },
            if self.uses_subgroups() { "on" } else { "off" }
        )
    }

    pub(crate) fn kernels(&self) -> &Arc<Kernels> {
        &self.kernels
    }

    /// The value of type `T` for this device, built by `init` on first use and shared by
    /// every clone of the context (compiled pipelines, for instance).
    pub(crate) fn cached<T: Any + Send + Sync>(
        &self,
        init: impl FnOnce(&wgpu::Device) -> T,
    ) -> Arc<T> {
        let key = TypeId::of::<T>();
        if let Some(v) = self
            .extensions
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            if let Ok(v) = v.downcast::<T>() {
                return v;
            }
        }
        // Built outside the lock: compiling pipelines takes a while.
        let value = Arc::new(init(&self.device));
        if let Ok(mut m) = self.extensions.lock() {
            let entry = m.entry(key).or_insert_with(|| value.clone());
            if let Ok(v) = entry.clone().downcast::<T>() {
                return v;
            }
        }
        value
    }

    pub(crate) fn plan_limits(&self) -> &PlanLimits {
        &self.limits
    }

    /// `Err(DeviceLost)` once the device is gone (destroyed, reset, removed: on a device this
    /// context created and on a caller's alike); `Err(Gpu)` once for an uncaptured error the
    /// device reported since the last check (on a device this context created).
    pub fn check_alive(&self) -> Result<()> {
        self.check_flags()?;
        if self.probe_lost() {
            return Err(self.mark_lost("the device was destroyed or lost"));
        }
        Ok(())
    }

    /// The cheap part of [`Context::check_alive`]: what callbacks and earlier calls recorded.
    pub(crate) fn check_flags(&self) -> Result<()> {
        if let Some(why) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost(why));
        }
        match self.errors.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(Error::Gpu(e)),
            None => Ok(()),
        }
    }

    /// Whether the device is lost, asked without a callback (a caller's device keeps its own):
    /// a lost device does not record submissions, so waiting on an empty one fails with
    /// `WrongSubmissionIndex`. Never blocks.
    fn probe_lost(&self) -> bool {
        let index = self.queue.submit([]);
        matches!(
            self.device.poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: Some(std::time::Duration::ZERO),
            }),
            Err(wgpu::PollError::WrongSubmissionIndex(..))
        )
    }

    fn mark_lost(&self, why: &str) -> Error {
        if let Ok(mut l) = self.lost.lock() {
            l.get_or_insert_with(|| why.to_string());
        }
        self.check_flags()
            .err()
            .unwrap_or_else(|| Error::DeviceLost(why.into()))
    }

    /// Runs `f`, which talks to the device, inside error scopes, so that a validation, memory
    /// or internal error comes back as an [`Error`] instead of reaching the uncaptured-error
    /// handler (a caller's device keeps its handler, which by default panics). An error on a
    /// lost device is [`Error::DeviceLost`].
    pub(crate) fn guard<T, E: From<Error>>(
        &self,
        what: &str,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.check_flags()?;
        let scopes = [
            wgpu::ErrorFilter::Internal,
            wgpu::ErrorFilter::OutOfMemory,
            wgpu::ErrorFilter::Validation,
        ]
        .map(|filter| self.device.push_error_scope(filter));
        let out = f();
        let mut first = None;
        for scope in scopes.into_iter().rev() {
            if let Some(e) = pollster::block_on(scope.pop()) {
                first.get_or_insert(e);
            }
        }
        match first {
            None => out,
            Some(wgpu::Error::OutOfMemory { .. }) => {
                Err(Error::OutOfMemory(format!("{what}: out of device memory")).into())
            }
            Some(e) => Err(if self.probe_lost() {
                self.mark_lost(&format!("{what}: the device was destroyed or lost"))
            } else {
                Error::Gpu(format!("{what}: {e}"))
            }
            .into()),
        }
    }

    /// `queue.write_buffer`, guarded.
    pub(crate) fn write(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> Result<()> {
        self.guard("writing a buffer", || {
            self.queue.write_buffer(buffer, offset, bytes);
            Ok::<_, Error>(())
        })
    }

    /// Submits without waiting, guarded; a lost device is reported, not ignored.
    pub(crate) fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<wgpu::SubmissionIndex> {
        crate::work::submit();
        self.guard("submitting work", || {
            Ok(self.queue.submit([encoder.finish()]))
        })
    }

    /// Creates a buffer, turning an out-of-memory into [`Error::OutOfMemory`].
    pub(crate) fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        self.check_flags()?;
        let max = self.device.limits().max_buffer_size;
        if size > max {
            return Err(Error::TooLarge {
                what: "buffer bytes",
                limit: "max_buffer_size",
                needed: size,
                max,
            });
        }
        let what = format!("{label} ({size} bytes)");
        let buffer = self.guard(&what, || {
            Ok::<_, Error>(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(16).next_multiple_of(4),
                usage,
                mapped_at_creation: false,
            }))
        })?;
        self.verify_allocation(&buffer, &what)?;
        Ok(buffer)
    }

    /// GL drivers may fail a large allocation without an error (llvmpipe under an
    /// address-space limit does): the buffer then has no storage and reads back zeros. On GL,
    /// a large buffer is proven real by a sentinel written to its last word and read back.
    fn verify_allocation(&self, buffer: &wgpu::Buffer, what: &str) -> Result<()> {
        const VERIFY_FROM: u64 = 64 << 20;
        let copyable = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        if self.info.backend != wgpu::Backend::Gl
            || buffer.size() < VERIFY_FROM
            || !buffer.usage().contains(copyable)
        {
            return Ok(());
        }
        let last = buffer.size() - 4;
        let sentinel = 0x5EED_F00Du32;
        self.write(buffer, last, bytemuck::bytes_of(&sentinel))?;
        let back = pollster::block_on(self.read_bytes_async(buffer, last, 4))?;
        if back != sentinel.to_le_bytes() {
            return Err(Error::OutOfMemory(format!(
                "{what}: the driver could not allocate it"
            )));
        }
        // Buffers start zeroed.
        self.write(buffer, last, &[0; 4])
    }

    /// A uniform buffer holding `value`.
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> Result<wgpu::Buffer> {
        let b = self.create_buffer(
            label,
            std::mem::size_of::<T>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        self.write(&b, 0, bytemuck::bytes_of(value))?;
        Ok(b)
    }

    /// A storage buffer (`STORAGE | COPY_SRC | COPY_DST`) of `bytes`.
    /// A uniform buffer holding `bytes`.
    pub(crate) fn uniform_bytes(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let b = self.create_buffer(
            label,
            bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        self.write(&b, 0, bytes)?;
        Ok(b)
    }

    pub(crate) fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.create_buffer(
            label,
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        )
    }

    /// Submits and waits until the GPU is done.
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        let index = self.submit(encoder)?;
        self.wait(Some(index))
    }

    /// Waits until the submission `index` (`None`: every submission) is done.
    pub(crate) fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map_err(|e| match e {
                // A lost device recorded no submission: the index it handed out is unknown.
                wgpu::PollError::WrongSubmissionIndex(..) => {
                    self.mark_lost("the device was destroyed or lost")
                }
                other => self
                    .check_flags()
                    .err()
                    .unwrap_or_else(|| Error::Gpu(other.to_string())),
            })?;
        // Surface an error the device reported for the work just finished.
        self.check_flags()
    }

    /// Reads `size` bytes of `buffer` from `offset` (multiples of 4): copy to a staging buffer,
    /// map it, wait.
    pub async fn read_bytes_async(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::BufferUsage {
                what: "readback",
                missing: wgpu::BufferUsages::COPY_SRC,
            });
        }
        let end = offset.checked_add(size);
        if end.is_none_or(|e| e > buffer.size())
            || !offset.is_multiple_of(4)
            || !size.is_multiple_of(4)
        {
            return Err(Error::BufferTooSmall {
                what: "readback",
                needed: end.unwrap_or(u64::MAX),
                available: buffer.size(),
            });
        }
        let staging = self.create_buffer(
            "bn.readback",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let slice = staging.slice(..size);
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        let index = self.guard("reading a buffer back", || {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
            let index = self.queue.submit([encoder.finish()]);
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            Ok::<_, Error>(index)
        })?;
        // On native backends mapping completes inside poll; on the web the browser drives it.
        self.wait(Some(index))?;
        match rx.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(self.readback_failed(e.to_string())),
            None => return Err(self.readback_failed("map callback dropped".into())),
        }
        let bytes = slice
            .get_mapped_range()
            .map_err(|e| self.readback_failed(e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// A map that failed: `DeviceLost` when the device is gone (a destroy from another thread
    /// can land between the wait and the map), else a recorded error, else `Readback`.
    fn readback_failed(&self, why: String) -> Error {
        if self.probe_lost() {
            return self.mark_lost("reading a buffer back: the device was destroyed or lost");
        }
        self.check_flags().err().unwrap_or(Error::Readback(why))
    }

    /// Reads `count` f32 values of `buffer` from byte `offset`. Blocks.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, offset: u64, count: usize) -> Result<Vec<f32>> {
        let bytes = pollster::block_on(self.read_bytes_async(buffer, offset, count as u64 * 4))?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
