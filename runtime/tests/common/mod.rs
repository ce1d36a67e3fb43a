//! A real `guestkit-worker daemon` process for end-to-end tests, and an HTTP client for it.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The worker binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_guestkit-worker")
}

/// Compile cache shared by every daemon the tests start.
pub fn compile_cache() -> PathBuf {
    guestkit_fixtures::cache_root().join("daemon-compile-cache")
}

/// A running daemon; killed (SIGKILL) on drop unless stopped.
pub struct Daemon {
    pub child: Option<Child>,
    pub api: String,
    pub metrics: String,
    pub data_dir: PathBuf,
    stderr_log: PathBuf,
}

/// Options beyond the defaults for [`Daemon::start`].
#[derive(Default, Clone)]
pub struct Opts {
    pub args: Vec<String>,
    pub handlers: Vec<PathBuf>,
}

impl Daemon {
    /// Starts a daemon on ephemeral ports with its data in `data_dir`.
    pub fn start(data_dir: &Path, opts: &Opts) -> Daemon {
        let handlers = data_dir.join("handlers");
        std::fs::create_dir_all(&handlers).unwrap();
        std::fs::create_dir_all(data_dir.join("images")).unwrap();
        for h in &opts.handlers {
            std::fs::copy(h, handlers.join(h.file_name().unwrap())).unwrap();
        }
        let stderr_log = data_dir.join(format!("daemon-{}.log", unique()));
        let stderr = std::fs::File::create(&stderr_log).unwrap();
        let mut child = Command::new(binary())
            .arg("--cache-dir")
            .arg(compile_cache())
            .arg("daemon")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(&opts.args)
            .env("RUST_LOG", "info,guestkit_worker=debug")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting the daemon");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "daemon did not become ready:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready");
        Daemon {
            child: Some(child),
            api: ready["api_url"].as_str().unwrap().to_string(),
            metrics: ready["metrics_url"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            data_dir: data_dir.to_path_buf(),
            stderr_log,
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for exit; returns the exit status code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > until {
                let _ = child.kill();
                panic!("daemon did not exit within {within:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A client for this daemon's API.
    pub fn http(&self) -> Http {
        self.http_as(None)
    }

    /// A client for this daemon's API presenting `token` as a bearer token (or none).
    pub fn http_as(&self, token: Option<&str>) -> Http {
        Http {
            base: self.api.clone(),
            client: reqwest::Client::new(),
            token: token.map(String::from),
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Minimal JSON-over-HTTP client.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
    /// Bearer token sent with every request, if any.
    pub token: Option<String>,
}

impl Http {
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}/api/v1{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().into_bytes(), "application/json")
            .await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        let request = self
            .client
            .post(format!("{}/api/v1{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        self.send(request).await
    }

    /// Submits and asserts 201; returns the job id.
    pub async fn submit(&self, doc: &Value) -> String {
        let (status, body) = self.post("/jobs", doc).await;
        assert_eq!(status, 201, "submit {doc}: {body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Waits for the job to finish and returns its result document.
    pub async fn result(&self, id: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.get(&format!("/jobs/{id}/result?wait=20")).await;
            match status {
                200 => return body,
                409 if Instant::now() < until => continue,
                _ => panic!("result of {id}: {status} {body}"),
            }
        }
    }

    /// Polls until the job is in `state`.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, job) = self.get(&format!("/jobs/{id}")).await;
            if job["status"] == state {
                return job;
            }
            assert!(
                Instant::now() < until,
                "job {id} never reached {state}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A short-form job.
pub fn short(operation: &str, payload: Value) -> Value {
    json!({"operation": operation, "payload": payload})
}

/// The value of a metric line `name{labels} value` whose labels include every `want`.
pub fn metric(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match key.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            if metric != name {
                return None;
            }
            let ok = want
                .iter()
                .all(|(k, v)| labels.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .reduce(|a, b| a + b)
}
