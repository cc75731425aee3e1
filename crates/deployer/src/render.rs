//! Renders engine progress: a line per resource and a progress bar in a terminal, plain lines
//! otherwise, nothing with `-q`. Progress always goes to stderr so `--json` stdout stays one
//! document.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use twin_engine::{Action, Event, EventSink};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Interactive terminal: a bar plus a line per resource.
    Terminal,
    /// Pipes and CI: one plain line per resource.
    Plain,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// Picks the mode for stderr.
    pub fn detect(quiet: bool) -> ProgressMode {
        if quiet {
            ProgressMode::Quiet
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Terminal
        } else {
            ProgressMode::Plain
        }
    }
}

/// An event sink that draws progress.
pub struct Progress {
    mode: ProgressMode,
    bar: Mutex<Option<ProgressBar>>,
    /// Whether lines for reads and unchanged resources are shown (plan/info do not need them).
    show_unchanged: bool,
}

impl Progress {
    /// A renderer for one command.
    pub fn new(mode: ProgressMode, show_unchanged: bool) -> Progress {
        Progress {
            mode,
            bar: Mutex::new(None),
            show_unchanged,
        }
    }

    /// Removes the bar at the end of a command.
    pub fn finish(&self) {
        if let Some(bar) = self.lock().take() {
            bar.finish_and_clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn line(&self, text: String) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Terminal => match self.lock().as_ref() {
                Some(bar) => bar.println(text),
                None => eprintln!("{text}"),
            },
            ProgressMode::Plain => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+ created",
        Action::Update => "~ updated",
        Action::Delete => "- deleted",
        Action::Unchanged => "= unchanged",
        Action::Read => "  read",
    }
}

impl EventSink for Progress {
    fn emit(&self, event: Event) {
        match event {
            Event::Planned { total } => {
                if self.mode == ProgressMode::Terminal {
                    let bar = ProgressBar::with_draw_target(
                        Some(total as u64),
                        ProgressDrawTarget::stderr(),
                    );
                    if let Ok(style) = ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} eta {eta} {msg}",
                    ) {
                        bar.set_style(style);
                    }
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    if let Some(old) = self.lock().replace(bar) {
                        old.finish_and_clear();
                    }
                }
            }
            Event::Started { label, action, .. } => {
                if let Some(bar) = self.lock().as_ref() {
                    if action != Action::Read {
                        bar.set_message(format!("{} {label}", action.verb()));
                    }
                }
            }
            Event::Retrying {
                label,
                attempt,
                delay,
                error,
                ..
            } => {
                self.line(format!(
                    "  retrying {label} (attempt {attempt} failed: {error}; next in {:.1}s)",
                    delay.as_secs_f64()
                ));
            }
            Event::Finished {
                label,
                action,
                elapsed,
                ..
            } => {
                if let Some(bar) = self.lock().as_ref() {
                    bar.inc(1);
                }
                let shown = match action {
                    Action::Read => false,
                    Action::Unchanged => self.show_unchanged,
                    _ => true,
                };
                if shown {
                    self.line(format!(
                        "{} {label} ({:.1}s)",
                        symbol(action),
                        elapsed.as_secs_f64()
                    ));
                }
            }
            Event::Failed { error, .. } => {
                if let Some(bar) = self.lock().as_ref() {
                    bar.inc(1);
                }
                self.line(format!("! {error}"));
            }
            Event::Skipped { label, reason, .. } => {
                self.line(format!("? {label}: {reason}"));
            }
        }
    }
}
