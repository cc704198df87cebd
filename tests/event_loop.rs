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
    fn scrub(&mut self, _job: lerpscope::session::ScrubJob) {}
    fn export(&mut self, _job: lerpscope::session::ExportJob) {}
}

/// Latency runs from when the input thread read a key, so time it spent queued (behind a draw,
/// or anything else) is counted.
#[test]
fn key_latency_counts_from_when_the_key_was_read() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let latencies = rt.block_on(async {
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
        let key = |c| {
            Ok(Event::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::NONE,
            )))
        };
        // Read 80 ms ago, then queued until now.
        let read = Instant::now() - Duration::from_millis(80);
        itx.send((read, key('m'))).unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            itx.send((Instant::now(), key('m'))).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            itx.send((Instant::now(), key('q'))).unwrap();
        });
        let mut sink = Recorder::default();
        event_loop(&mut terminal, &mut app, irx, erx, &mut sink)
            .await
            .unwrap()
    });
    assert_eq!(latencies.len(), 2, "{latencies:?}");
    assert!(latencies[0] >= 80.0, "{latencies:?}");
    assert!(latencies[1] < 80.0, "{latencies:?}");
}
