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

/// Whether escape sequences (colours, a redrawn bar) may go to stderr: only to a terminal, and
/// not when the user asked for none (`NO_COLOR` set to anything, <https://no-color.org>) or the
/// terminal cannot show them (`TERM=dumb`).
pub fn escapes_on_stderr() -> bool {
    escapes_allowed(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

fn escapes_allowed(
    terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

impl ProgressMode {
    /// Picks the mode for stderr: the bar only where escape sequences may go.
    pub fn detect(quiet: bool) -> ProgressMode {
        if quiet {
            ProgressMode::Quiet
        } else if escapes_on_stderr() {
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

#[cfg(test)]
mod tests {
    use super::escapes_allowed;
    use std::ffi::OsStr;

    #[test]
    fn escapes_only_to_a_terminal_without_no_color_or_a_dumb_term() {
        let s = |v: &'static str| Some(OsStr::new(v));
        assert!(escapes_allowed(true, None, s("xterm-256color")));
        assert!(
            escapes_allowed(true, s(""), None),
            "NO_COLOR empty counts as unset"
        );
        assert!(!escapes_allowed(false, None, s("xterm")), "a pipe");
        assert!(!escapes_allowed(true, s("1"), s("xterm")), "NO_COLOR=1");
        assert!(!escapes_allowed(true, None, s("dumb")));
    }
}
