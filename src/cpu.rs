//! Whether this CPU runs what the build was compiled for, asked before anything else.
//!
//! The build targets x86-64-v3 (.cargo/config.toml): every crate compiled here may use AVX2,
//! FMA, F16C, BMI and MOVBE instructions anywhere, and on an older CPU the first of them kills
//! the process with SIGILL before it can say why. [`require_build_features`] runs first in
//! `main` and compares the features the build assumed (`cfg!(target_feature)`) with those the
//! CPU reports (CPUID); on a shortfall it prints one line naming what is missing and how to
//! build for this CPU, and exits with status 1.
//!
//! It is written to run on any x86-64: plain calls into the standard library with static
//! strings, no loops or copies the compiler could vectorise. `qemu-x86_64 -cpu Nehalem` runs it
//! (tests/cpu.rs); `LERPSCOPE_PRETEND_CPU_LACKS=FEATURE` makes it act as if this CPU lacked
//! one, for the test on any machine.

use std::io::Write;

/// Exit with one line if the CPU lacks a feature the build was compiled to use.
pub fn require_build_features() {
    #[cfg(target_arch = "x86_64")]
    {
        let cpu = Cpu::read();
        let mut missing = false;
        macro_rules! need {
            ($f:tt, $has:expr) => {
                if cfg!(target_feature = $f) && !$has {
                    report($f, missing);
                    missing = true;
                }
            };
        }
        need!("sse3", cpu.ecx1 & 1 != 0);
        need!("ssse3", cpu.ecx1 & (1 << 9) != 0);
        need!("sse4.1", cpu.ecx1 & (1 << 19) != 0);
        need!("sse4.2", cpu.ecx1 & (1 << 20) != 0);
        need!("popcnt", cpu.ecx1 & (1 << 23) != 0);
        need!("avx", cpu.ecx1 & (1 << 28) != 0 && cpu.avx_state);
        need!("avx2", cpu.ebx7 & (1 << 5) != 0 && cpu.avx_state);
        need!("fma", cpu.ecx1 & (1 << 12) != 0 && cpu.avx_state);
        need!("f16c", cpu.ecx1 & (1 << 29) != 0);
        need!("bmi1", cpu.ebx7 & (1 << 3) != 0);
        need!("bmi2", cpu.ebx7 & (1 << 8) != 0);
        need!("lzcnt", cpu.ecx_ext & (1 << 5) != 0);
        need!("movbe", cpu.ecx1 & (1 << 22) != 0);
        if missing {
            finish();
        }
        // Only a CPU with everything gets here, so the test hook may use any instruction.
        if let Some(f) = std::env::var_os("LERPSCOPE_PRETEND_CPU_LACKS") {
            report(&f.to_string_lossy(), false);
            finish();
        }
    }
}

/// The CPUID feature words the check reads. (The standard library's
/// `is_x86_feature_detected!` answers "yes" at compile time for every feature the build
/// enables, so it cannot tell.)
#[cfg(target_arch = "x86_64")]
struct Cpu {
    /// Leaf 1, ECX.
    ecx1: u32,
    /// Leaf 7 (sub-leaf 0), EBX.
    ebx7: u32,
    /// Leaf 0x8000_0001, ECX.
    ecx_ext: u32,
    /// The OS saves the AVX registers (OSXSAVE, and XCR0's SSE and AVX bits).
    avx_state: bool,
}

#[cfg(target_arch = "x86_64")]
impl Cpu {
    #[inline(never)]
    fn read() -> Self {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        // SAFETY: CPUID exists on every x86-64 CPU; leaves past the maximum read as zeros
        // (checked against it). XGETBV runs only where OSXSAVE says it may.
        unsafe {
            let max = __cpuid(0).eax;
            let max_ext = __cpuid(0x8000_0000).eax;
            let ecx1 = if max >= 1 { __cpuid(1).ecx } else { 0 };
            let ebx7 = if max >= 7 { __cpuid_count(7, 0).ebx } else { 0 };
            let ecx_ext = if max_ext >= 0x8000_0001 {
                __cpuid(0x8000_0001).ecx
            } else {
                0
            };
            let osxsave = ecx1 & (1 << 27) != 0;
            let avx_state = osxsave && std::arch::x86_64::_xgetbv(0) & 0b110 == 0b110;
            Self {
                ecx1,
                ebx7,
                ecx_ext,
                avx_state,
            }
        }
    }
}

/// One missing feature, after the line's start or a comma.
#[inline(never)]
fn report(feature: &str, after_another: bool) {
    let mut e = std::io::stderr().lock();
    let _ = if after_another {
        e.write_all(b", ")
    } else {
        e.write_all(b"error: this lerpscope was built for x86-64-v3 CPUs and this CPU lacks ")
    };
    let _ = e.write_all(feature.as_bytes());
}

#[inline(never)]
fn finish() -> ! {
    let _ = std::io::stderr().write_all(
        b"; build it for this CPU with RUSTFLAGS=\"-C target-cpu=native\" cargo build --release \
(or delete the rustflags line in .cargo/config.toml)\n",
    );
    std::process::exit(1)
}
