//! The real binary in a real terminal: tmux runs `lerpscope tui` on a tiny pair, keys are sent
//! with send-keys and the screen is read with capture-pane. Skipped (with a message) where tmux
//! is not installed; .ci/run installs it.

use lerpscope::fixtures::{write_tiny_pair, Arch};
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

    /// Poll the screen until `pred` holds; the last screen either way.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(20) {
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

/// The rows of the first column's box (between its borders).
fn first_column(screen: &str) -> String {
    screen
        .lines()
        .skip_while(|l| !l.contains("α = "))
        .skip(1)
        .map(|l| l.chars().skip(1).take(36).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Run `lerpscope tui ARGS` on a fresh tiny pair inside tmux, with `env` before it; after it
/// exits the shell prints the terminal mode and an end marker. None where tmux is missing.
fn launch(
    arch: Arch,
    env: &str,
    args: &str,
    size: (u16, u16),
    name: &str,
) -> Option<(tempfile::TempDir, Tmux)> {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    let cmd = format!(
        "{env} {} tui --a {} --b {} --device cpu {args}; stty -a | grep -o -- '-*icanon'; echo LERPSCOPE_EXITED; sleep 30",
        env!("CARGO_BIN_EXE_lerpscope"),
        a.display(),
        b.display()
    );
    let tmux = Tmux {
        socket: format!("lerpscope-{name}-{}", std::process::id()),
    };
    let (w, h) = (size.0.to_string(), size.1.to_string());
    tmux.run(&["new-session", "-d", "-x", &w, "-y", &h, "-s", "ui", &cmd]);
    Some((tmp, tmux))
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
        let shown = tmux.wait_for("the big α", |s| s.contains("███"));
        assert!(!shown.contains("? keys"), "no status details:\n{shown}");
        assert!(
            !shown.contains("prompt (e to edit)"),
            "columns only:\n{shown}"
        );
        assert!(shown.contains("α = 0.00"), "the columns stay:\n{shown}");
        // The animation moves the focused α, and a key stops it.
        tmux.keys(&["v"]);
        tmux.wait_for("the animation to move α", |s| s.contains("α = -0.75"));
        tmux.keys(&["x"]);
        tmux.keys(&["z", "q"]);
        tmux.wait_for("the program to exit", |s| s.contains("LERPSCOPE_EXITED"));
    }
}
