//! The release runner binary as a child process, on a fresh data dir.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use e2e::process::RunnerProcess;
use serde_json::{json, Value};

pub const KEY: &str = "whp_benchmark_key";

pub fn release_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.parent().unwrap().join(name);
    if !bin.exists() {
        // Each binary is its package's only one.
        let status = Command::new("cargo")
            .args(["build", "--release", "-p", name])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("building {name} failed"));
        }
    }
    Ok(bin)
}

/// POSTs `body` with `key`; a non-2xx answer is an error naming the path and the body.
pub async fn post_json(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    let resp = http
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let value: Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{path}: {status} {value}"));
    }
    Ok(value)
}

/// The runner process with an HTTP client for the load.
pub struct Runner {
    process: RunnerProcess,
    http: reqwest::Client,
}

impl Runner {
    pub async fn start() -> Result<Runner, String> {
        Self::start_in(None).await
    }

    /// The runner on `data_dir` (a fresh one when `None`).
    pub async fn start_in(data_dir: Option<&std::path::Path>) -> Result<Runner, String> {
        let mut builder = RunnerProcess::builder()
            .binary(release_binary("webhooks")?)
            .platform_key(KEY)
            .ready_within(Duration::from_secs(20));
        if let Some(dir) = data_dir {
            builder = builder.data_dir(dir);
        }
        let process = builder.start().await?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Runner { process, http })
    }

    pub fn base(&self) -> &str {
        self.process.base()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        post_json(&self.http, self.base(), KEY, path, body).await
    }

    /// Creates a subscription; answers its id.
    pub async fn subscribe(
        &self,
        account: &str,
        url: &str,
        extra: Value,
    ) -> Result<String, String> {
        let mut body = json!({"url": url, "event_types": ["*"]});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let created = self
            .post(&format!("/v1/accounts/{account}/webhooks"), &body)
            .await?;
        created["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("a subscription without an id: {created}"))
    }

    /// GETs `path` with the platform key; a non-2xx answer is an error.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base()))
            .bearer_auth(KEY)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let value: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {value}"));
        }
        Ok(value)
    }

    /// (current, peak) resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}
