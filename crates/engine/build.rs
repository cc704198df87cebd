//! Under the `cuda` feature, compile the blend kernels (src/cuda/blend.cu), the fused forward
//! pass's (src/cuda/decode.cu) and the sampler's (src/cuda/sample.cu) to PTX with nvcc.
//!
//! Why at build time rather than with NVRTC at run time: a kernel that does not compile then
//! fails the build (CI builds the feature), not a user's first slider move.
//!
//! The PTX targets the virtual architecture `compute_$CUDA_COMPUTE_CAP` (90 by default, like
//! candle's own kernels, which read the same variable). The driver JIT-compiles PTX for GPUs of
//! that compute capability or newer, never older: the default build loads on H100/H200 (9.0) and
//! later GPUs; for an A100 build with `CUDA_COMPUTE_CAP=80`, for an RTX 4090 with 89, and so on.
//!
//! `--fmad=false` for blend.cu and sample.cu: their kernels must equal the CPU's blend and
//! sampler bit for bit, so no multiply-add may be contracted into one FMA (their intrinsics
//! already forbid it; this keeps it so). decode.cu is held to a tolerance and keeps FMAs.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    simd_kernels();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed=src/cuda/blend.cu");
    println!("cargo:rerun-if-changed=src/cuda/decode.cu");
    println!("cargo:rerun-if-changed=src/cuda/sample.cu");
    println!("cargo:rerun-if-changed=src/cuda/elements.cuh");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=CUDA_ROOT");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap = cap.trim_end_matches(['a', 'f']);
    let nvcc = std::env::var("CUDA_ROOT")
        .map(|r| std::path::Path::new(&r).join("bin/nvcc"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| "nvcc".into());
    // The blend must round like the CPU's (no contraction); the decode kernels may fuse.
    for (name, exact) in [("blend", true), ("sample", true), ("decode", false)] {
        let status = std::process::Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("--fmad={}", !exact))
            .arg(format!("--gpu-architecture=compute_{cap}"))
            .arg(format!("src/cuda/{name}.cu"))
            .arg("-o")
            .arg(out.join(format!("{name}.ptx")))
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): the cuda feature needs nvcc (see README, GPU)",
                    nvcc.display()
                )
            });
        assert!(status.success(), "nvcc failed on src/cuda/{name}.cu");
    }
}

/// `cfg(simd_kernels)` where the target has every feature the SIMD kernels use (AVX2, FMA,
/// F16C; see .cargo/config.toml): the one way kernels pick their SIMD path, at compile time.
/// (The binary checks at start that the CPU has what the build assumed: src/cpu.rs.)
fn simd_kernels() {
    println!("cargo::rustc-check-cfg=cfg(simd_kernels)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    if arch == "x86_64" && ["avx2", "fma", "f16c"].into_iter().all(has) {
        println!("cargo:rustc-cfg=simd_kernels");
    }
}
