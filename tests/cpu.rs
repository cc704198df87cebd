//! The start-up check (src/cpu.rs): a CPU without what the build was compiled for gets one line
//! saying what is missing and how to build for it, and status 1, instead of SIGILL.

use std::process::Command;

fn lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        // qemu's own notes about CPU features it cannot emulate.
        .filter(|l| !l.starts_with("qemu-x86_64:"))
        .map(String::from)
        .collect()
}

/// The hook pretends this CPU lacks AVX2: one line, status 1, nothing run.
#[test]
fn a_missing_feature_is_one_line_and_status_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .arg("--version")
        .env("LERPSCOPE_PRETEND_CPU_LACKS", "avx2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "the version was printed anyway");
    let l = lines(&out);
    assert_eq!(l.len(), 1, "{l:?}");
    for part in [
        "x86-64-v3",
        "lacks avx2",
        "target-cpu=native",
        ".cargo/config.toml",
    ] {
        assert!(l[0].contains(part), "{part:?} missing: {}", l[0]);
    }
}

/// Under qemu-user, an old CPU (Nehalem: no AVX) gets the line where the build used to die
/// with SIGILL (status 132) before printing anything; a new one (Haswell) runs. Where qemu is
/// not installed the test says so (CI installs it and sets LERPSCOPE_REQUIRE_QEMU). Mutation
/// tried: detecting with `is_x86_feature_detected!`, which answers yes at compile time for
/// every feature the build enables (SIGILL again).
#[test]
fn an_old_cpu_under_qemu_gets_the_line_instead_of_sigill() {
    if Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        lerpscope::shapes::skip(
            "qemu-x86_64 is not installed (Debian: qemu-user)",
            "LERPSCOPE_REQUIRE_QEMU",
        );
        return;
    }
    let run = |cpu: &str| {
        Command::new("qemu-x86_64")
            .args(["-cpu", cpu, env!("CARGO_BIN_EXE_lerpscope"), "--version"])
            .output()
            .unwrap()
    };
    let old = run("Nehalem");
    let l = lines(&old);
    assert_eq!(old.status.code(), Some(1), "{l:?}");
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].contains("lacks avx, avx2, fma, f16c"), "{}", l[0]);
    let new = run("Haswell");
    assert!(new.status.success(), "{:?}", lines(&new));
    assert!(String::from_utf8_lossy(&new.stdout).starts_with("lerpscope "));
}
