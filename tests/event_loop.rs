//! The real event loop on a headless terminal: what it measures and what it sends.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use lerpscope::app::keymap::Keymap;
use lerpscope::app::App;
use lerpscope::engine::{Alpha, GenerationParams};
use lerpscope::session::{ColumnId, CurveJob, Job};
use lerpscope::tui::{event_loop, JobSink};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Recorder(Vec<ColumnId>);

impl JobSink for Recorder {
    fn submit(&mut self, column: ColumnId, _job: Job) {
        self.0.push(column);
    }
    fn remove(&mut self, _column: ColumnId) {}
    fn curve(&mut self, _job: CurveJob) {}
    fn find(&mut self, _job: lerpscope::session::FindJob) {}
    fn cancel_find(&mut self, _id: u64) {}
    fn cancel_curve(&mut self, _id: u64) {}
    fn scrub(&mut self, _job: lerpscope::session::ScrubJob) {}
    fn export(&mut self, _job: lerpscope::session::ExportJob) {}
    fn set_layer_alphas(&mut self, _spec: String) {}
    fn set_gamma(&mut self, _gamma: f64) {}
}

/// Latency runs from when the input thread read a key, so time it spent queued is counted;
/// keys waiting together are answered by one frame, applied in the order they were read.
/// Asserted without wall-clock bounds that a loaded machine could break: five keys already
/// waiting when the loop starts (read 80, 30, 20, 10 and 0 ms before) share its first frame,
/// so the first reports at least 80 ms and their latencies differ by exactly those gaps; and
/// the α the last four spell ("1.5" then Enter) is 1.5. Mutations tried: latency stamped when
/// the frame starts instead of when the key was read (the gaps vanish), the batch applied in
/// reverse (α 5.1 is left being typed and q then types into it: the loop never ends).
#[test]
fn key_latency_counts_from_the_read_and_waiting_keys_share_a_frame() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (latencies, app) = rt.block_on(async {
        let mut app = App::new(
            "a".into(),
            "b".into(),
            "The food",
            &[Alpha::A],
            GenerationParams::default(),
            Keymap::default(),
        );
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
        let (itx, irx) = tokio::sync::mpsc::unbounded_channel();
        let (_etx, erx) = tokio::sync::mpsc::unbounded_channel();
        let key = |code| Ok(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        let now = Instant::now();
        let waiting = [
            (80, KeyCode::Char('m')),
            (30, KeyCode::Char('1')),
            (20, KeyCode::Char('.')),
            (10, KeyCode::Char('5')),
            (0, KeyCode::Enter),
        ];
        for (ago, code) in waiting {
            itx.send((now - Duration::from_millis(ago), key(code)))
                .unwrap();
        }
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            itx.send((Instant::now(), key(KeyCode::Char('q')))).unwrap();
        });
        let mut sink = Recorder::default();
        let latencies = event_loop(&mut terminal, &mut app, irx, erx, &mut sink)
            .await
            .unwrap();
        (latencies, app)
    });
    assert_eq!(latencies.len(), 5, "{latencies:?}");
    assert!(latencies[0] >= 80.0, "{latencies:?}");
    for (i, gap) in [(0, 50.0), (1, 10.0), (2, 10.0), (3, 10.0)] {
        let d = latencies[i] - latencies[i + 1];
        assert!(
            (d - gap).abs() < 0.01,
            "keys {i} and {}: {latencies:?}",
            i + 1
        );
    }
    assert_eq!(app.columns[0].alpha.value(), 1.5);
}
