//! Whether a pair fits before a byte of it is loaded: the two endpoints, the working copy and
//! the key/value caches of a few columns, against free GPU memory or the RAM the system can
//! still give.

use crate::error::{bail, Context, Result};
use crate::formats::config::ModelConfig;
use candle_core::{DType, Device};

/// Free and total memory of a CUDA device, in bytes; None on other devices.
pub fn device_memory(device: &Device) -> Option<(u64, u64)> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        let (free, total) = d.cuda_stream().context().mem_get_info().ok()?;
        return Some((free as u64, total as u64));
    }
    let _ = device;
    None
}

/// `MemAvailable` of /proc/meminfo, in bytes: what the system can give without swapping.
pub fn host_available_memory() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemAvailable` from the text of /proc/meminfo, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What `device` can still hold, and how to name it in a message.
fn available(device: &Device) -> Option<(u64, &'static str)> {
    match device {
        Device::Cpu => host_available_memory().map(|b| (b, "the system")),
        _ => device_memory(device).map(|(free, _)| (free, "the GPU")),
    }
}

/// Columns' worth of key/value cache the memory check reserves, at the full context (capped).
const KV_RESERVE_SEQUENCES: u64 = 4;
const KV_RESERVE_MAX_POSITIONS: u64 = 4096;

/// Refuse a full pair that cannot fit on `device` before loading anything: `buffers` flat
/// buffers of `buffer_bytes` (three: A, B and the working copy; a plane's four with C) and the
/// key/value caches.
pub(crate) fn check_fits(
    device: &Device,
    config: &ModelConfig,
    buffer_bytes: u64,
    buffers: u64,
    dtype: DType,
) -> Result<()> {
    let Some((free, place)) = available(device) else {
        return Ok(());
    };
    let kv = kv_reserve(config, dtype);
    fit_buffers(buffer_bytes, buffers, kv, free, place)
        .with_context(|| format!("--device {}", device_name(device)))
}

/// Refuse an adapter pair that cannot fit on `device` before loading anything: the base, a
/// working copy of the tensors the adapters change, and the key/value caches.
pub(crate) fn check_adapters_fit(
    device: &Device,
    config: &ModelConfig,
    base_bytes: u64,
    changed_bytes: u64,
    dtype: DType,
) -> Result<()> {
    let Some((free, place)) = available(device) else {
        return Ok(());
    };
    let kv = kv_reserve(config, dtype);
    let needed = base_bytes.saturating_add(changed_bytes).saturating_add(kv);
    if needed > free {
        bail!(
            Memory,
            "--device {}: the base and adapters need {:.2} GiB (base {:.2} GiB, working copy of \
             the tensors they change {:.2} GiB, key/value caches {:.2} GiB) but {place} has \
             {:.2} GiB free; try --dtype bf16 or a smaller base",
            device_name(device),
            gib(needed),
            gib(base_bytes),
            gib(changed_bytes),
            gib(kv),
            gib(free)
        );
    }
    Ok(())
}

fn kv_reserve(config: &ModelConfig, dtype: DType) -> u64 {
    let positions = (config.max_positions() as u64).min(KV_RESERVE_MAX_POSITIONS);
    KV_RESERVE_SEQUENCES
        .saturating_mul(positions)
        .saturating_mul(config.kv_bytes_per_position(dtype.size_in_bytes()))
}

/// Refuse `bytes` of working buffers the device cannot hold (benchmarks' random buffers).
pub fn check_host_memory(device: &Device, bytes: u64) -> Result<()> {
    match available(device) {
        Some((free, place)) if bytes > free => bail!(
            Memory,
            "needs {:.2} GiB but {place} has {:.2} GiB available",
            gib(bytes),
            gib(free)
        ),
        _ => Ok(()),
    }
}

/// Below this a batch is not checked: every generation starts here, and a batch this small is
/// not what runs a machine out of memory, so the common case asks the system nothing.
const ROWS_CHECKED_FROM: u64 = 256 << 20;

/// Refuse a batch of `rows` rows whose caches and activations (`bytes`, from
/// [`crate::generate::RowMemory`]) the device cannot hold.
pub fn check_rows(device: &Device, bytes: u64, rows: usize) -> Result<()> {
    if bytes < ROWS_CHECKED_FROM {
        return Ok(());
    }
    match available(device) {
        Some((free, place)) if bytes > free => bail!(
            Memory,
            "{rows} rows at once need about {:.2} GiB (key/value caches and activations) but {place} has {:.2} GiB available; run fewer columns, alphas or samples at once",
            gib(bytes),
            gib(free)
        ),
        _ => Ok(()),
    }
}

/// Whether three buffers of `buffer_bytes` and `kv_bytes` of caches fit in `free` bytes of GPU
/// memory; the error gives the memory needed and available.
pub fn memory_fit(buffer_bytes: u64, kv_bytes: u64, free: u64) -> Result<()> {
    fit(buffer_bytes, kv_bytes, free, "the GPU")
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

fn fit(buffer_bytes: u64, kv_bytes: u64, free: u64, place: &str) -> Result<()> {
    fit_buffers(buffer_bytes, 3, kv_bytes, free, place)
}

fn fit_buffers(
    buffer_bytes: u64,
    buffers: u64,
    kv_bytes: u64,
    free: u64,
    place: &str,
) -> Result<()> {
    let needed = buffer_bytes
        .saturating_mul(buffers)
        .saturating_add(kv_bytes);
    let what = if buffers == 4 {
        "A, B, C and the working copy"
    } else {
        "A, B and the working copy"
    };
    if needed > free {
        bail!(
            Memory,
            "the pair needs {:.2} GiB ({what}: {buffers} × {:.2} GiB; key/value \
             caches: {:.2} GiB) but {place} has {:.2} GiB free; try --dtype bf16 or a smaller pair",
            gib(needed),
            gib(buffer_bytes),
            gib(kv_bytes),
            gib(free)
        );
    }
    Ok(())
}

pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo(text), Some(20_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB"), None);
    }

    #[test]
    fn the_message_names_the_place_and_never_overflows() {
        let e = fit(u64::MAX / 2, u64::MAX, 1 << 30, "the system").unwrap_err();
        assert!(
            e.to_string().contains("the system has 1.00 GiB free"),
            "{e}"
        );
    }
}
