//! The `webhooks` runner binary as a child process, for the tests that need the real process
//! (killed with SIGKILL, restarted, its logs read) and for the benchmark.
//!
//! ```text
//! let runner = RunnerProcess::builder().data_dir(dir.path()).port(port).platform_key(KEY);
//! let mut p = runner.start().await.unwrap(); // answers its health check
//! p.kill(); // SIGKILL: no shutdown code runs
//! let p = runner.start().await.unwrap(); // the same data dir and port again
//! ```
//!
//! Every process may deliver over plain HTTP to loopback (`--allow-http --allow-cidr
//! 127.0.0.0/8`), where the tests' receivers listen, and is killed when dropped, so a failing
//! test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::WAIT;

/// Where the process's stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Output {
    /// stdout discarded, stderr to this process's stderr (the default).
    Stderr,
    /// Both discarded.
    Discard,
    /// Both written to this file (created, or truncated).
    File(PathBuf),
}

/// How to start a runner process; `start` may be called again for a restart.
#[derive(Debug, Clone)]
pub struct RunnerBuilder {
    binary: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    port: Option<u16>,
    platform_key: Option<String>,
    log_level: String,
    output: Output,
    env_remove: Vec<String>,
    ready_within: Duration,
}

impl RunnerBuilder {
    /// The binary to run; by default the workspace's `webhooks` beside the running test
    /// (`crate::workspace_binary`).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// `--data-dir`; by default a fresh temporary dir, removed with the process.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The loopback port of `--addr`; by default a free one, chosen at each start.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `--platform-key`. Without it the runner generates one and keeps it in the data dir
    /// (`WEBHOOKS_PLATFORM_KEY` is removed from the process's environment).
    pub fn platform_key(mut self, key: &str) -> Self {
        self.platform_key = Some(key.to_string());
        self
    }

    /// `RUST_LOG`; `warn` by default.
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Removes a variable this process has from the runner's environment.
    pub fn env_remove(mut self, name: &str) -> Self {
        self.env_remove.push(name.to_string());
        self
    }

    /// How long `start` waits for the health check to answer; `WAIT` by default.
    pub fn ready_within(mut self, timeout: Duration) -> Self {
        self.ready_within = timeout;
        self
    }

    /// Spawns the process and waits until it answers its health check.
    pub async fn start(&self) -> Result<RunnerProcess, String> {
        let temp_dir = match self.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().map_err(|e| e.to_string())?),
        };
        let data_dir = match (&self.data_dir, &temp_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(temp)) => temp.path().to_path_buf(),
            (None, None) => unreachable!("a temporary dir when none is given"),
        };
        let port = self.port.unwrap_or_else(crate::free_port);
        let binary = match &self.binary {
            Some(binary) => binary.clone(),
            None => crate::workspace_binary("webhooks"),
        };
        let mut command = Command::new(&binary);
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--allow-http", "--allow-cidr", "127.0.0.0/8"])
            .env("RUST_LOG", &self.log_level)
            .stdin(Stdio::null());
        match &self.platform_key {
            Some(key) => command.args(["--platform-key", key]),
            None => command.env_remove("WEBHOOKS_PLATFORM_KEY"),
        };
        for name in &self.env_remove {
            command.env_remove(name);
        }
        match &self.output {
            Output::Stderr => command.stdout(Stdio::null()).stderr(Stdio::inherit()),
            Output::Discard => command.stdout(Stdio::null()).stderr(Stdio::null()),
            Output::File(path) => {
                let out =
                    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let err = out.try_clone().map_err(|e| e.to_string())?;
                command.stdout(Stdio::from(out)).stderr(Stdio::from(err))
            }
        };
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut process = RunnerProcess {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            port,
            data_dir,
            _temp_dir: temp_dir,
        };
        process.wait_ready(self.ready_within).await?;
        Ok(process)
    }
}

/// A running `webhooks` process; killed (SIGKILL) when dropped.
pub struct RunnerProcess {
    child: Option<Child>,
    base: String,
    port: u16,
    data_dir: PathBuf,
    _temp_dir: Option<tempfile::TempDir>,
}

impl RunnerProcess {
    pub fn builder() -> RunnerBuilder {
        RunnerBuilder {
            binary: None,
            data_dir: None,
            port: None,
            platform_key: None,
            log_level: "warn".into(),
            output: Output::Stderr,
            env_remove: Vec::new(),
            ready_within: WAIT,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, then reaps the process: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the runner");
            child.wait().expect("reap the runner");
        }
    }

    /// Polls the health check until it answers (any status), the process exits or
    /// `timeout` passes.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let http = reqwest::Client::new();
        let url = format!("{}/healthz", self.base);
        let deadline = Instant::now() + timeout;
        loop {
            let seen = match http.get(&url).send().await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("the runner at {} exited: {status}", self.base));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the runner at {} did not answer within {timeout:?}; last seen: {seen}",
                    self.base
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
