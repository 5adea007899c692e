//! Command mode: run a workload's `config.command` as a real local server.
//!
//! The command is split into words like a shell would (quotes and backslashes, no
//! expansion, no pipes) and run directly, never through a shell. Its port is the
//! `{port}` placeholder, a port flag already in the command, or a free port appended
//! with the backend's own flag.
//!
//! # No orphans, even when the host is SIGKILLed
//! Without unsafe code there is no `PR_SET_PDEATHSIG`, and a SIGKILLed host runs no
//! destructor, so the host cannot be the one that cleans up. Instead every workload runs
//! under a small `sh` watchdog ([`WATCHDOG`]) that leads its own process group and holds
//! the read end of a pipe whose only write end is the host's `stdin` handle for it (std
//! opens it close-on-exec, so no other child inherits it). The kernel closes that end
//! whatever way the host ends, and the same happens when a [`RunningWorkload`] is
//! dropped. The watchdog's guard sees end-of-file, sends SIGTERM to the group, waits up
//! to the grace period for the workload, then sends SIGKILL to the group. The watchdog
//! also exits with the workload's status, so a crash is reported with its exit code, and
//! it sends SIGTERM to whatever the workload left in the group.
//!
//! Limits: a workload that moves itself to another process group or session escapes the
//! group signals; and a forked copy of the host (e.g. Python's `os.fork`) holds the
//! lifeline open until it exits too.

use std::collections::VecDeque;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferencekey_core::wire::redact_token;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{ChildStdin, Command};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

/// `sh -c` script run as `sh -c WATCHDOG ik-watchdog GRACE_SECS PROGRAM ARGS...`.
///
/// - The workload gets `/dev/null` as stdin and does not keep the host's pipe (fd 3).
/// - The guard keeps the default SIGTERM action until end-of-file, so the group-wide
///   SIGTERM of [`RunningWorkload::stop`] ends it too; after end-of-file it ignores
///   SIGTERM so that it survives its own group-wide SIGTERM and can escalate to SIGKILL.
/// - The main shell ignores SIGTERM only after the workload has started (ignored signals
///   are inherited across exec), so that it outlives the workload and reports its status.
/// - `$$` is the main shell's pid in both shells, which is the process group id.
const WATCHDOG: &str = r#"grace=$1; shift
exec 3<&0 </dev/null
"$@" 3<&- &
child=$!
(
  while read -r _ <&3; do :; done
  trap '' TERM
  kill -s TERM -- "-$$" 2>/dev/null
  n=0
  while [ "$n" -lt "$grace" ] && kill -s 0 "$child" 2>/dev/null; do sleep 1; n=$((n + 1)); done
  kill -s KILL -- "-$$" 2>/dev/null
) &
exec 3<&-
trap '' TERM
wait "$child"
status=$?
kill -s TERM -- "-$$" 2>/dev/null
exit "$status"
"#;

const LOCALHOST: &str = "127.0.0.1";

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("config.command is empty")]
    Empty,
    #[error("config.command has an unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    #[error("config.command ends with a lone backslash")]
    TrailingBackslash,
    #[error(
        "config.command uses shell syntax `{0}`; command mode runs one program without a shell"
    )]
    ShellSyntax(String),
    #[error("config.command sets an invalid port `{0}`")]
    InvalidPort(String),
    #[error("backend `{0}` has no known port flag; put `{{port}}` in config.command")]
    UnknownPortFlag(String),
    #[error("could not start config.command: {0}")]
    Io(#[from] std::io::Error),
}

/// How a workload process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExitInfo {
    /// The exit code; a workload killed by signal N shows as `128 + N` here, as the
    /// watchdog shell reports it.
    pub(crate) code: Option<i32>,
    /// Set when the watchdog itself was killed by a signal (e.g. SIGKILL after the grace).
    pub(crate) signal: Option<i32>,
    /// The last lines of stdout and stderr, interleaved, with tokens redacted.
    pub(crate) last_lines: Vec<String>,
}

impl ExitInfo {
    fn new(status: ExitStatus, last_lines: Vec<String>) -> Self {
        Self {
            code: status.code(),
            signal: status.signal(),
            last_lines,
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "process exited with code {code}")?,
            (None, Some(sig)) => write!(f, "process killed by signal {sig}")?,
            (None, None) => write!(f, "process ended")?,
        }
        if !self.last_lines.is_empty() {
            write!(f, "; last output:\n{}", self.last_lines.join("\n"))?;
        }
        Ok(())
    }
}

/// Why [`RunningWorkload::wait_healthy`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HealthError {
    #[error("{0}")]
    Exited(ExitInfo),
    #[error("no healthy answer before the deadline; last output:\n{}", .last_lines.join("\n"))]
    TimedOut { last_lines: Vec<String> },
}

/// A parsed command, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparedCommand {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) port: u16,
}

/// Settings shared by every workload started in command mode.
#[derive(Debug, Clone)]
pub(crate) struct CommandRunner {
    /// Time between SIGTERM and SIGKILL, on [`RunningWorkload::stop`] and in the watchdog.
    pub(crate) grace: Duration,
    /// Time between two health probes.
    pub(crate) poll_interval: Duration,
    /// How many output lines to keep for error messages.
    pub(crate) tail_lines: usize,
}

impl Default for CommandRunner {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            poll_interval: Duration::from_millis(150),
            tail_lines: 20,
        }
    }
}

impl CommandRunner {
    /// Starts `command` for a workload of `backend`. Must be called inside a tokio runtime.
    pub(crate) fn spawn(
        &self,
        command: &str,
        backend: &str,
    ) -> Result<RunningWorkload, CommandError> {
        let prepared = prepare(command, backend, free_port)?;
        self.spawn_prepared(prepared)
    }

    pub(crate) fn spawn_prepared(
        &self,
        cmd: PreparedCommand,
    ) -> Result<RunningWorkload, CommandError> {
        let grace_secs = (self.grace.as_secs() + u64::from(self.grace.subsec_nanos() > 0)).max(1);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("ik-watchdog")
            .arg(grace_secs.to_string())
            .arg(&cmd.program)
            .args(&cmd.args)
            .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pgid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the process ended at once"))?;
        let stdin = child.stdin.take();
        let tail = Arc::new(Mutex::new(Tail::new(self.tail_lines)));
        let readers = [
            child
                .stdout
                .take()
                .map(|out| tokio::spawn(collect_lines(out, tail.clone()))),
            child
                .stderr
                .take()
                .map(|err| tokio::spawn(collect_lines(err, tail.clone()))),
        ];
        let (exit_tx, exit_rx) = watch::channel(None);
        let waiter_tail = tail.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            // Grandchildren may keep the pipes open; the tail only needs what was flushed.
            for reader in readers.into_iter().flatten() {
                let _ = timeout(Duration::from_millis(500), reader).await;
            }
            let lines = waiter_tail.lock().unwrap().lines();
            let info = match status {
                Ok(status) => ExitInfo::new(status, lines),
                Err(err) => ExitInfo {
                    code: None,
                    signal: None,
                    last_lines: [
                        lines,
                        vec![format!("waiting for the process failed: {err}")],
                    ]
                    .concat(),
                },
            };
            tracing::debug!(pgid, status = %info, "command-mode workload ended");
            let _ = exit_tx.send(Some(info));
        });
        tracing::debug!(pgid, port = cmd.port, program = %cmd.program, "command-mode workload started");
        let program = std::path::Path::new(&cmd.program)
            .file_name()
            .map_or_else(|| cmd.program.clone(), |n| n.to_string_lossy().into_owned());
        Ok(RunningWorkload {
            program,
            port: cmd.port,
            pgid,
            grace: self.grace,
            poll_interval: self.poll_interval,
            stdin: Mutex::new(stdin),
            exit: exit_rx,
            tail,
        })
    }
}

/// A workload process started by [`CommandRunner::spawn`]. Dropping it stops the process
/// group (through the watchdog), like [`RunningWorkload::stop`] but without waiting.
#[derive(Debug)]
pub(crate) struct RunningWorkload {
    /// The program's file name, for messages.
    program: String,
    port: u16,
    pgid: u32,
    grace: Duration,
    poll_interval: Duration,
    /// The host's end of the watchdog's lifeline; never written, only closed.
    stdin: Mutex<Option<ChildStdin>>,
    exit: watch::Receiver<Option<ExitInfo>>,
    tail: Arc<Mutex<Tail>>,
}

impl RunningWorkload {
    /// The program's file name (`llama-server` for `/opt/bin/llama-server`).
    pub(crate) fn program(&self) -> &str {
        &self.program
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{LOCALHOST}:{}", self.port)
    }

    /// The process group id (also the watchdog's pid).
    pub(crate) fn pgid(&self) -> u32 {
        self.pgid
    }

    /// The last output lines, redacted.
    pub(crate) fn last_lines(&self) -> Vec<String> {
        self.tail.lock().unwrap().lines()
    }

    /// Polls `GET /health` (or `GET /v1/models` when the server has no `/health`) until
    /// it answers 200, the process exits, or `deadline` passes.
    pub(crate) async fn wait_healthy(&self, deadline: Instant) -> Result<(), HealthError> {
        let mut exit = self.exit.clone();
        let mut path = "/health";
        loop {
            if let Some(info) = exit.borrow_and_update().clone() {
                return Err(HealthError::Exited(info));
            }
            let probe_deadline = deadline.min(Instant::now() + Duration::from_secs(2));
            match timeout_at(probe_deadline, http_status(self.port, path)).await {
                Some(Ok(200)) => return Ok(()),
                // Servers without a health route (vLLM and llama-server have one; others
                // may not) still list their models once they are up.
                Some(Ok(404)) if path == "/health" => {
                    path = "/v1/models";
                    continue;
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(HealthError::TimedOut {
                    last_lines: self.last_lines(),
                });
            }
            let next = deadline.min(Instant::now() + self.poll_interval);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = exit.changed() => {}
            }
        }
    }

    /// Waits until the process has ended, however that happens.
    pub(crate) async fn wait_exit(&self) -> ExitInfo {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_else(|| self.ended_unknown()),
            // The waiter task is gone (its runtime is shutting down).
            Err(_) => self.ended_unknown(),
        }
    }

    fn ended_unknown(&self) -> ExitInfo {
        ExitInfo {
            code: None,
            signal: None,
            last_lines: self.last_lines(),
        }
    }

    /// SIGTERM to the process group, SIGKILL after the runner's grace period. Safe to
    /// call more than once and from several tasks.
    pub(crate) async fn stop(&self) -> ExitInfo {
        self.stop_with_grace(self.grace).await
    }

    pub(crate) async fn stop_with_grace(&self, grace: Duration) -> ExitInfo {
        let mut exit = self.exit.clone();
        if exit.borrow().is_none() {
            signal_group(self.pgid, "TERM").await;
            if timeout(grace, exit.wait_for(Option::is_some))
                .await
                .is_err()
            {
                tracing::debug!(
                    pgid = self.pgid,
                    "workload ignored SIGTERM; sending SIGKILL"
                );
                signal_group(self.pgid, "KILL").await;
            }
        }
        // SIGKILL cannot be ignored, so this wait is short; the bound only guards against
        // a process stuck in the kernel (uninterruptible I/O).
        let info = match timeout(Duration::from_secs(10), exit.wait_for(Option::is_some)).await {
            Ok(Ok(info)) => info.clone(),
            _ => None,
        };
        // Leftovers that ignored SIGTERM: the group outlives its leader while members
        // remain, and its id cannot be reused while it has members.
        signal_group(self.pgid, "KILL").await;
        self.close_lifeline();
        info.unwrap_or_else(|| self.ended_unknown())
    }

    fn close_lifeline(&self) {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl Drop for RunningWorkload {
    fn drop(&mut self) {
        // Closing the lifeline is the stop signal for the watchdog; the waiter task keeps
        // running until it has reaped the process.
        self.close_lifeline();
    }
}

async fn timeout_at<F: std::future::Future>(deadline: Instant, fut: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, fut).await.ok()
}

/// Sends a signal to a whole process group through the shell's `kill` builtin, which
/// exists wherever the watchdog can run (no libc, no unsafe).
async fn signal_group(pgid: u32, signal: &str) {
    let result = Command::new("sh")
        .arg("-c")
        .arg(r#"kill -s "$1" -- "-$2" 2>/dev/null"#)
        .arg("ik-signal")
        .arg(signal)
        .arg(pgid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(err) = result {
        tracing::warn!(pgid, signal, %err, "could not signal the workload's process group");
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status code. A raw socket
/// keeps the probe free of proxies, pools and TLS settings that a client would bring.
async fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect((LOCALHOST, port)).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {LOCALHOST}:{port}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// Asks the kernel for a free port. Another process could take it before the workload
/// binds it; the workload then fails to start and says so in its output.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((LOCALHOST, 0))?
        .local_addr()?
        .port())
}

async fn collect_lines<R: AsyncRead + Unpin>(reader: R, tail: Arc<Mutex<Tail>>) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tail.lock()
                    .unwrap()
                    .push(text.trim_end_matches(['\r', '\n']));
            }
        }
    }
}

/// The last N output lines.
#[derive(Debug)]
struct Tail {
    cap: usize,
    lines: VecDeque<String>,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            lines: VecDeque::new(),
        }
    }

    fn push(&mut self, line: &str) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
        }
        // Bounded so that one huge line cannot hold megabytes of memory.
        let line: String = redact_secrets(line).chars().take(2000).collect();
        self.lines.push_back(line);
    }

    fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// Replaces every `ik_sdk_…` / `ik_live_…` token (prefix then hex digits and `_`) with
/// its redacted form, so that a workload echoing its environment cannot leak one.
pub(crate) fn redact_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let found = ["ik_sdk_", "ik_live_"]
            .iter()
            .filter_map(|prefix| rest.find(prefix).map(|at| (at, prefix.len())))
            .min();
        let Some((at, prefix_len)) = found else {
            out.push_str(rest);
            return out;
        };
        let body_len = rest[at + prefix_len..]
            .bytes()
            .take_while(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'_'))
            .count();
        out.push_str(&rest[..at]);
        let end = at + prefix_len + body_len;
        if body_len == 0 {
            out.push_str(&rest[at..end]);
        } else {
            out.push_str(&redact_token(&rest[at..end]));
        }
        rest = &rest[end..];
    }
}

/// Splits a command line into words: whitespace separates words; single quotes keep
/// everything literally; double quotes keep everything but `\"`, `\\`, `\$` and `` \` ``;
/// a backslash outside quotes keeps the next character. There is no expansion.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, CommandError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once anything (even `''`) was seen, so empty quoted words survive.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(CommandError::UnterminatedQuote("single")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(CommandError::UnterminatedQuote("double")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(CommandError::UnterminatedQuote("double")),
                    }
                }
            }
            '\\' => match chars.next() {
                // Line continuation, as in a shell script.
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(CommandError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Turns `config.command` into a program, arguments, environment and port.
///
/// Leading `NAME=value` words become environment variables, as in a shell. Every
/// `{port}` placeholder becomes one free port. The workload's port is, in order: the one
/// the command sets (`--port N`, `--port=N`, or `OLLAMA_HOST` for ollama); the
/// placeholder's; or a free port added with the backend's flag (an unknown backend
/// needs one of the first two). llama.cpp, vLLM and SGLang servers also get
/// `--host 127.0.0.1` unless the command picks a host, so nothing listens beyond this
/// machine by default.
pub(crate) fn prepare(
    command: &str,
    backend: &str,
    mut pick_port: impl FnMut() -> std::io::Result<u16>,
) -> Result<PreparedCommand, CommandError> {
    let words = split_words(command)?;
    if let Some(op) = words.iter().find(|w| is_shell_operator(w)) {
        return Err(CommandError::ShellSyntax(op.clone()));
    }
    let mut words = words.into_iter().peekable();
    let mut env = Vec::new();
    while let Some(word) = words.next_if(|w| env_assignment(w).is_some()) {
        let (name, value) = env_assignment(&word).unwrap_or_default();
        env.push((name.to_owned(), value.to_owned()));
    }
    let program = words.next().ok_or(CommandError::Empty)?;
    let mut args: Vec<String> = words.collect();

    let has_placeholder = args
        .iter()
        .chain(env.iter().map(|(_, v)| v))
        .any(|w| w.contains("{port}"));
    let placeholder_port = if has_placeholder {
        let port = pick_port()?;
        for word in args.iter_mut().chain(env.iter_mut().map(|(_, v)| v)) {
            *word = word.replace("{port}", &port.to_string());
        }
        Some(port)
    } else {
        None
    };

    let port = match backend_family(backend) {
        Family::HttpServer => {
            if !has_flag(&args, "--host") {
                args.extend(["--host".to_owned(), LOCALHOST.to_owned()]);
            }
            match (flag_value(&args, "--port"), placeholder_port) {
                (Some(value), _) => parse_port(&value)?,
                (None, Some(port)) => port,
                (None, None) => {
                    let port = pick_port()?;
                    args.extend(["--port".to_owned(), port.to_string()]);
                    port
                }
            }
        }
        Family::Ollama => {
            let existing = env
                .iter()
                .find(|(k, _)| k == "OLLAMA_HOST")
                .map(|(_, v)| v.clone());
            match (existing, placeholder_port) {
                (Some(host), _) => parse_port(host.rsplit(':').next().unwrap_or_default())?,
                (None, Some(port)) => port,
                (None, None) => {
                    let port = pick_port()?;
                    env.push(("OLLAMA_HOST".to_owned(), format!("{LOCALHOST}:{port}")));
                    port
                }
            }
        }
        Family::Unknown => match (flag_value(&args, "--port"), placeholder_port) {
            (Some(value), _) => parse_port(&value)?,
            (None, Some(port)) => port,
            (None, None) => return Err(CommandError::UnknownPortFlag(backend.to_owned())),
        },
    };
    Ok(PreparedCommand {
        program,
        args,
        env,
        port,
    })
}

enum Family {
    HttpServer,
    Ollama,
    Unknown,
}

fn backend_family(backend: &str) -> Family {
    match backend {
        "llamacpp" | "llama-server" | "llama.cpp" | "vllm" | "vllm-omni" | "sglang" => {
            Family::HttpServer
        }
        "ollama" => Family::Ollama,
        _ => Family::Unknown,
    }
}

fn is_shell_operator(word: &str) -> bool {
    matches!(
        word,
        "|" | "||" | "&" | "&&" | ";" | ";;" | ">" | ">>" | "<" | "<<" | "2>" | "2>&1"
    )
}

fn env_assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some((name, value))
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| {
        a == flag
            || a.strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// The value of the last `--flag V` or `--flag=V` (the last one wins in these CLIs).
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            found = iter.next().cloned();
        } else if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found = Some(value.to_owned());
        }
    }
    found
}

fn parse_port(value: &str) -> Result<u16, CommandError> {
    match value.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(CommandError::InvalidPort(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_port() -> std::io::Result<u16> {
        Ok(4321)
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn splits_like_a_shell() {
        let words =
            split_words(r#"llama-server -m '/models/a b.gguf' --alias "chat \"x\"" a\ b '' c"#)
                .unwrap();
        assert_eq!(
            words,
            strings(&[
                "llama-server",
                "-m",
                "/models/a b.gguf",
                "--alias",
                "chat \"x\"",
                "a b",
                "",
                "c"
            ])
        );
        assert_eq!(
            split_words("  a\t b\\\n c  ").unwrap(),
            strings(&["a", "b", "c"])
        );
        assert_eq!(
            split_words(r#"x "a\nb" 'c\d'"#).unwrap(),
            strings(&["x", "a\\nb", "c\\d"])
        );
        assert_eq!(split_words("a'b'\"c\"d").unwrap(), strings(&["abcd"]));
        assert!(split_words("").unwrap().is_empty());
    }

    #[test]
    fn split_rejects_broken_quoting() {
        assert!(matches!(
            split_words("a 'b"),
            Err(CommandError::UnterminatedQuote("single"))
        ));
        assert!(matches!(
            split_words("a \"b"),
            Err(CommandError::UnterminatedQuote("double"))
        ));
        assert!(matches!(
            split_words("a b\\"),
            Err(CommandError::TrailingBackslash)
        ));
    }

    #[test]
    fn llamacpp_gets_host_and_port_appended() {
        let cmd = prepare(
            "llama-server -m m.gguf --alias chat",
            "llamacpp",
            fixed_port,
        )
        .unwrap();
        assert_eq!(cmd.program, "llama-server");
        assert_eq!(
            cmd.args,
            strings(&[
                "-m",
                "m.gguf",
                "--alias",
                "chat",
                "--host",
                "127.0.0.1",
                "--port",
                "4321"
            ])
        );
        assert_eq!(cmd.port, 4321);
        assert!(cmd.env.is_empty());
    }

    #[test]
    fn placeholder_and_existing_ports_are_used() {
        let cmd = prepare(
            "VAR=1 srv --listen=127.0.0.1:{port} --port {port}",
            "vllm",
            fixed_port,
        )
        .unwrap();
        assert_eq!(cmd.env, vec![("VAR".to_owned(), "1".to_owned())]);
        assert_eq!(cmd.program, "srv");
        assert_eq!(
            cmd.args,
            strings(&[
                "--listen=127.0.0.1:4321",
                "--port",
                "4321",
                "--host",
                "127.0.0.1"
            ])
        );
        assert_eq!(cmd.port, 4321);

        let never = || -> std::io::Result<u16> { panic!("no port should be picked") };
        let cmd = prepare("vllm serve m --host 0.0.0.0 --port=8011", "vllm", never).unwrap();
        assert_eq!(
            cmd.args,
            strings(&["serve", "m", "--host", "0.0.0.0", "--port=8011"])
        );
        assert_eq!(cmd.port, 8011);
    }

    #[test]
    fn ollama_port_goes_through_the_environment() {
        let cmd = prepare("ollama serve", "ollama", fixed_port).unwrap();
        assert_eq!(cmd.args, strings(&["serve"]));
        assert_eq!(
            cmd.env,
            vec![("OLLAMA_HOST".to_owned(), "127.0.0.1:4321".to_owned())]
        );
        assert_eq!(cmd.port, 4321);

        let cmd = prepare(
            "OLLAMA_HOST=127.0.0.1:9000 ollama serve",
            "ollama",
            fixed_port,
        )
        .unwrap();
        assert_eq!(cmd.port, 9000);
        assert_eq!(cmd.env.len(), 1);
    }

    #[test]
    fn prepare_rejects_what_it_cannot_run() {
        assert!(matches!(
            prepare("  ", "llamacpp", fixed_port),
            Err(CommandError::Empty)
        ));
        assert!(matches!(
            prepare("A=1", "llamacpp", fixed_port),
            Err(CommandError::Empty)
        ));
        assert!(matches!(
            prepare("srv | tee log", "llamacpp", fixed_port),
            Err(CommandError::ShellSyntax(op)) if op == "|"
        ));
        assert!(matches!(
            prepare("srv --port 99999", "sglang", fixed_port),
            Err(CommandError::InvalidPort(_))
        ));
        assert!(matches!(
            prepare("my-server", "acme-custom", fixed_port),
            Err(CommandError::UnknownPortFlag(b)) if b == "acme-custom"
        ));
        assert_eq!(
            prepare("my-server --bind {port}", "acme-custom", fixed_port)
                .unwrap()
                .port,
            4321
        );
        assert_eq!(
            prepare("my-server --port {port}", "acme-custom", fixed_port)
                .unwrap()
                .port,
            4321
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = "0123abcd_".to_owned() + &"ef".repeat(32);
        let line = format!("token=ik_sdk_{secret} and ik_live_{secret}; ik_sdk_ alone, ik_sdk_XYZ");
        let red = redact_secrets(&line);
        assert!(!red.contains(&"ef".repeat(32)), "{red}");
        assert_eq!(
            red,
            "token=ik_sdk_0123abcd… and ik_live_0123abcd…; ik_sdk_ alone, ik_sdk_XYZ"
        );
        assert_eq!(redact_secrets("plain text ü"), "plain text ü");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut tail = Tail::new(3);
        for i in 0..5 {
            tail.push(&format!("line {i}"));
        }
        assert_eq!(tail.lines(), strings(&["line 2", "line 3", "line 4"]));
    }

    fn runner() -> CommandRunner {
        CommandRunner {
            grace: Duration::from_secs(1),
            ..CommandRunner::default()
        }
    }

    fn deadline(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    /// A process is gone once it no longer exists or is a zombie waiting for a reaper
    /// (a container's pid 1 may never reap it).
    fn process_gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    fn process_group_of(pid: u32) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name: state, ppid, pgrp, ...
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[2].parse().unwrap()
    }

    async fn wait_gone(pid: u32, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if process_gone(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process_gone(pid)
    }

    async fn read_pid(path: &std::path::Path) -> u32 {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Ok(pid) = text.trim().parse() {
                    return pid;
                }
            }
            assert!(Instant::now() < end, "no pid written to {}", path.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ik-command-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn serves_until_stopped() {
        let dir = scratch_dir("serve");
        std::fs::write(dir.join("health"), "ok").unwrap();
        let command = format!(
            "python3 -m http.server {{port}} --bind 127.0.0.1 --directory '{}'",
            dir.display()
        );
        let workload = runner().spawn(&command, "acme-custom").unwrap();
        let port = workload.port();
        assert_eq!(workload.base_url(), format!("http://127.0.0.1:{port}"));
        workload.wait_healthy(deadline(20)).await.unwrap();
        assert_eq!(http_status(port, "/health").await.unwrap(), 200);
        assert_eq!(http_status(port, "/missing").await.unwrap(), 404);

        let pgid = workload.pgid();
        let info = workload.stop().await;
        assert!(info.code.is_some() || info.signal.is_some(), "{info:?}");
        assert!(wait_gone(pgid, Duration::from_secs(5)).await);
        assert!(
            http_status(port, "/health").await.is_err(),
            "still serving after stop"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn early_exit_is_reported_with_redacted_output() {
        let secret = "0123abcd_".to_owned() + &"5a".repeat(32);
        let command = format!(
            "sh -c 'echo loading; echo \"bad key ik_sdk_{secret}\" >&2; exit 3' ik --port {{port}}"
        );
        let workload = runner().spawn(&command, "acme-custom").unwrap();
        let started = Instant::now();
        let err = workload.wait_healthy(deadline(30)).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not return early"
        );
        let HealthError::Exited(info) = err else {
            panic!("expected an exit, got {err:?}")
        };
        assert_eq!(info.code, Some(3));
        assert!(info.last_lines.contains(&"loading".to_owned()), "{info:?}");
        assert!(
            info.last_lines
                .contains(&"bad key ik_sdk_0123abcd…".to_owned()),
            "{info:?}"
        );
        assert!(!info.to_string().contains(&"5a".repeat(32)));
        assert!(info.to_string().starts_with("process exited with code 3"));
    }

    #[tokio::test]
    async fn missing_program_is_an_early_exit() {
        let workload = runner()
            .spawn("definitely-not-a-program-ik --port {port}", "acme-custom")
            .unwrap();
        match workload.wait_healthy(deadline(30)).await {
            Err(HealthError::Exited(info)) => {
                assert_eq!(info.code, Some(127), "{info:?}");
                assert!(
                    info.last_lines.iter().any(|l| l.contains("not found")),
                    "{info:?}"
                );
            }
            other => panic!("expected an exit, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn health_wait_times_out_on_a_silent_process() {
        let workload = runner()
            .spawn(
                "sh -c 'echo waiting; exec sleep 30' ik --port {port}",
                "acme-custom",
            )
            .unwrap();
        let err = workload
            .wait_healthy(Instant::now() + Duration::from_millis(600))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HealthError::TimedOut { last_lines } if last_lines == &["waiting"]),
            "{err:?}"
        );
        let pgid = workload.pgid();
        workload.stop().await;
        assert!(wait_gone(pgid, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn sigterm_ignored_means_sigkill_after_grace() {
        let dir = scratch_dir("stubborn");
        let pid_file = dir.join("pid");
        let command = format!(
            "sh -c 'trap \"\" TERM; echo $$ > \"$0\"; while :; do sleep 1; done' '{}' --port {{port}}",
            pid_file.display()
        );
        let workload = runner().spawn(&command, "acme-custom").unwrap();
        let pid = read_pid(&pid_file).await;
        let started = Instant::now();
        let info = workload.stop_with_grace(Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(8));
        assert_eq!(info.signal, Some(9), "{info:?}");
        assert!(
            wait_gone(pid, Duration::from_secs(5)).await,
            "workload survived SIGKILL"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_group() {
        let dir = scratch_dir("drop");
        let pid_file = dir.join("pid");
        // The workload forks a grandchild too: the whole group must go.
        let command = format!(
            "sh -c 'sleep 300 & echo $! > \"$0.child\"; echo $$ > \"$0\"; wait' '{}' --port {{port}}",
            pid_file.display()
        );
        let workload = runner().spawn(&command, "acme-custom").unwrap();
        let pid = read_pid(&pid_file).await;
        let grandchild = read_pid(&dir.join("pid.child")).await;
        let watchdog = workload.pgid();
        drop(workload);
        assert!(
            wait_gone(pid, Duration::from_secs(5)).await,
            "workload outlived its handle"
        );
        assert!(
            wait_gone(grandchild, Duration::from_secs(5)).await,
            "grandchild outlived its handle"
        );
        assert!(
            wait_gone(watchdog, Duration::from_secs(5)).await,
            "watchdog lingered"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    const HOST_ENV: &str = "IK_COMMAND_TEST_HOST_PID_FILE";

    /// Run as a separate process by `no_orphan_after_host_sigkill`: starts a workload,
    /// then waits to be killed.
    #[tokio::test]
    #[ignore = "helper process for no_orphan_after_host_sigkill"]
    async fn host_process_for_orphan_test() {
        let Ok(pid_file) = std::env::var(HOST_ENV) else {
            return;
        };
        let command =
            format!("sh -c 'echo $$ > \"$0\"; exec sleep 300' '{pid_file}' --port {{port}}");
        let _workload = runner().spawn(&command, "acme-custom").unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
    }

    #[tokio::test]
    async fn no_orphan_after_host_sigkill() {
        let dir = scratch_dir("orphan");
        let pid_file = dir.join("pid");
        // The test harness names tests by their path without the crate's name.
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let helper = format!("{module}::host_process_for_orphan_test");
        let mut host = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &helper, "--ignored", "--nocapture"])
            .env(HOST_ENV, &pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = read_pid(&pid_file).await;
        assert!(!process_gone(pid));
        let watchdog = process_group_of(pid);
        assert_ne!(watchdog, pid);
        host.start_kill().unwrap(); // SIGKILL: the host runs no destructor
        host.wait().await.unwrap();
        assert!(
            wait_gone(pid, Duration::from_secs(10)).await,
            "workload {pid} survived its host"
        );
        assert!(
            wait_gone(watchdog, Duration::from_secs(5)).await,
            "watchdog lingered"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
