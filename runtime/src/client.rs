//! The HTTP client behind the CLI's `submit`, `status`, `result`, `list`, `cancel`,
//! `handlers`, `capabilities` and `health` commands, and their output formats.

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
    /// The API's document as YAML.
    Yaml,
}

/// A failed API call: the HTTP status (None when the server could not be reached) and the
/// server's error document or the transport error.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ApiFailure {}

/// A client of one worker's API.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client for `api_url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(api_url: &str) -> Result<Self> {
        let base = api_url.trim_end_matches('/');
        let base = base.strip_suffix("/api/v1").unwrap_or(base).to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(anyhow!(
                "--api-url: expected http://HOST:PORT or https://..., got {api_url:?}"
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            base,
            http,
            token: None,
        })
    }

    /// Sends `Authorization: Bearer TOKEN` with every request (workers with tenants).
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token.filter(|t| !t.is_empty()).map(str::to_owned);
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), ApiFailure> {
        let response = self
            .authorized(request)
            .send()
            .await
            .map_err(|e| ApiFailure {
                status: None,
                message: format!("cannot reach the worker at {}: {e}", self.base),
            })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| ApiFailure {
            status: Some(status),
            message: format!("reading the response: {e}"),
        })?;
        let body: Value = serde_json::from_str(&text).map_err(|_| ApiFailure {
            status: Some(status),
            message: format!(
                "the server answered with non-JSON: {}",
                truncate(&text, 200)
            ),
        })?;
        if status >= 400 {
            let error = &body["error"];
            let mut message = error["message"]
                .as_str()
                .unwrap_or("request failed")
                .to_string();
            if let Some(field) = error["field"].as_str() {
                message = format!("{field}: {message}");
            }
            return Err(ApiFailure {
                status: Some(status),
                message,
            });
        }
        Ok((status, body))
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> Result<Value, ApiFailure> {
        self.send(self.http.get(self.url(path)))
            .await
            .map(|(_, v)| v)
    }

    /// POST a JSON document; returns the status and the answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), ApiFailure> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// Waits for a job to finish (long polls of the result endpoint) and returns the result.
    pub async fn wait_result(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Value, ApiFailure> {
        let until = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            let wait = left
                .unwrap_or(Duration::from_secs(30))
                .min(Duration::from_secs(30));
            let path = format!("/jobs/{id}/result?wait={}", wait.as_secs_f64());
            match self.get(&path).await {
                Ok(v) => return Ok(v),
                Err(e) if e.status == Some(409) => {
                    if left.is_some_and(|l| l.is_zero()) {
                        return Err(ApiFailure {
                            status: None,
                            message: format!("job {id} did not finish in time"),
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Streams a job's events (SSE), calling `on_event(kind, data)` for each, until the
    /// stream ends.
    pub async fn watch(
        &self,
        id: &str,
        mut on_event: impl FnMut(&str, &Value),
    ) -> Result<(), ApiFailure> {
        let request = self
            .http
            .get(self.url(&format!("/jobs/{id}/events")))
            .header("accept", "text/event-stream");
        let response = self
            .authorized(request)
            .send()
            .await
            .map_err(|e| ApiFailure {
                status: None,
                message: format!("cannot reach the worker at {}: {e}", self.base),
            })?;
        let status = response.status().as_u16();
        if status >= 400 {
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(ApiFailure {
                status: Some(status),
                message: body["error"]["message"]
                    .as_str()
                    .unwrap_or("request failed")
                    .to_string(),
            });
        }
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        let mut kind = String::from("message");
        let mut data = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiFailure {
                status: None,
                message: format!("event stream broke: {e}"),
            })?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !data.is_empty() {
                        let value =
                            serde_json::from_str(&data).unwrap_or(Value::String(data.clone()));
                        on_event(&kind, &value);
                        if kind == "end" {
                            return Ok(());
                        }
                    }
                    kind = "message".into();
                    data.clear();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.trim_start());
                }
            }
        }
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses a job document file: JSON, or YAML (by extension, or when it is not JSON).
pub fn parse_document(text: &str, name: &str) -> Result<Value> {
    let yaml_ext = name.ends_with(".yaml") || name.ends_with(".yml");
    if !yaml_ext && let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let yaml: Value = serde_yaml::from_str(text)
        .with_context(|| format!("{name}: neither valid JSON nor valid YAML"))?;
    Ok(yaml)
}

/// Renders a document in the chosen format with `table` for the table form.
pub fn render(format: OutputFormat, value: &Value, table: impl FnOnce(&Value) -> String) -> String {
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(value).unwrap_or_default(),
        OutputFormat::Yaml => serde_yaml::to_string(value)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
        OutputFormat::Table => table(value).trim_end().to_string(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A table with a header row; columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<String>| {
        let mut parts = Vec::new();
        for (c, w) in cells.iter().zip(&widths) {
            parts.push(format!("{c:<w$}"));
        }
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(&mut out, row.clone());
    }
    out
}

/// `key: value` lines for the given keys of an object.
pub fn fields(value: &Value, keys: &[&str]) -> String {
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for key in keys {
        let k = format!("{key}:");
        let _ = writeln!(out, "{k:<width$} {}", cell(&value[*key]));
    }
    out
}

/// Table form of one job.
pub fn job_table(job: &Value) -> String {
    let mut out = fields(
        job,
        &[
            "id",
            "status",
            "operation",
            "priority",
            "attempt",
            "max_attempts",
            "created_at",
            "started_at",
            "finished_at",
        ],
    );
    if let Some(p) = job.get("progress").filter(|p| !p.is_null()) {
        let _ = writeln!(
            out,
            "progress:     {}/{} {}",
            cell(&p["done"]),
            cell(&p["total"]),
            p["message"].as_str().unwrap_or("")
        );
    }
    if let Some(e) = job.get("error").filter(|e| !e.is_null()) {
        let _ = writeln!(
            out,
            "error:        {}: {}",
            cell(&e["code"]),
            cell(&e["message"])
        );
    }
    out
}

/// Table form of a job list.
pub fn list_table(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| {
                    vec![
                        cell(&j["id"]),
                        cell(&j["status"]),
                        cell(&j["operation"]),
                        cell(&j["priority"]),
                        cell(&j["attempt"]),
                        cell(&j["created_at"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = table(
        &[
            "ID",
            "STATUS",
            "OPERATION",
            "PRIORITY",
            "ATTEMPT",
            "CREATED",
        ],
        &rows,
    );
    if let Some(cursor) = page["next_cursor"].as_str() {
        let _ = writeln!(out, "(more: --cursor {cursor})");
    }
    out
}

/// Table form of a result.
pub fn result_table(result: &Value) -> String {
    let mut out = fields(result, &["job_id", "status", "attempt", "completed_at"]);
    if let Some(output) = result.get("output") {
        // The built-in reports get tables of their own (see docs/schemas/); anything else
        // is shown as JSON.
        if output.get("operating_systems").is_some_and(Value::is_array) {
            out.push_str(&inspect_table(output));
        } else if output.get("findings").is_some_and(Value::is_array)
            && output.get("risk_score").is_some()
        {
            out.push_str(&profile_table(output));
        } else {
            let _ = writeln!(
                out,
                "output:\n{}",
                serde_json::to_string_pretty(output).unwrap_or_default()
            );
        }
    }
    if let Some(e) = result.get("error").filter(|e| !e.is_null()) {
        let _ = writeln!(
            out,
            "error:        {}: {}",
            cell(&e["code"]),
            cell(&e["message"])
        );
    }
    out
}

/// Table form of an `inspect` report: one row per operating system found, then counts.
pub fn inspect_table(report: &Value) -> String {
    let systems = report["operating_systems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let count = |os: &Value, key: &str| os[key].as_array().map_or(0, Vec::len).to_string();
    let rows: Vec<Vec<String>> = systems
        .iter()
        .map(|os| {
            let version = match (os["major_version"].as_u64(), os["minor_version"].as_u64()) {
                (Some(a), Some(b)) => format!("{a}.{b}"),
                (Some(a), None) => a.to_string(),
                _ => "-".into(),
            };
            vec![
                format!(
                    "{}:{}",
                    cell(&os["root"]["image"]),
                    cell(&os["root"]["volume"])
                ),
                cell(&os["type"]),
                cell(&os["distro"]),
                cell(&os["product_name"]),
                version,
                cell(&os["arch"]),
                cell(&os["hostname"]),
                count(os, "applications"),
                count(os, "services"),
                count(os, "users"),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ROOT", "TYPE", "DISTRO", "PRODUCT", "VERSION", "ARCH", "HOSTNAME", "APPS", "SERVICES",
            "USERS",
        ],
        &rows,
    );
    warnings_lines(&mut out, report);
    out
}

/// Table form of a `profile` report: summary, risk score, then one row per finding.
pub fn profile_table(report: &Value) -> String {
    let s = &report["summary"];
    let mut out = format!(
        "risk score:   {} / 100 (critical {}, high {}, medium {}, low {})\n",
        cell(&report["risk_score"]),
        cell(&s["critical"]),
        cell(&s["high"]),
        cell(&s["medium"]),
        cell(&s["low"]),
    );
    let rows: Vec<Vec<String>> = report["findings"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    let evidence = f["evidence"]
                        .as_array()
                        .and_then(|e| e.first())
                        .map(|e| match e["line"].as_u64() {
                            Some(line) => format!("{}:{line}", cell(&e["path"])),
                            None => cell(&e["path"]),
                        })
                        .unwrap_or_default();
                    vec![
                        cell(&f["id"]),
                        cell(&f["severity"]),
                        cell(&f["title"]),
                        evidence,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&table(&["ID", "SEVERITY", "FINDING", "EVIDENCE"], &rows));
    warnings_lines(&mut out, report);
    out
}

fn warnings_lines(out: &mut String, report: &Value) {
    for w in report["warnings"].as_array().into_iter().flatten() {
        let text = w
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| w.to_string());
        let _ = writeln!(out, "warning: {text}");
    }
}

/// Table form of the handler list.
pub fn handlers_table(doc: &Value) -> String {
    let rows: Vec<Vec<String>> = doc["handlers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let digest = cell(&h["digest"]);
                    vec![
                        cell(&h["name"]),
                        cell(&h["version"]),
                        cell(&h["operations"]),
                        cell(&h["source"]),
                        digest.chars().take(19).collect(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = table(
        &["NAME", "VERSION", "OPERATIONS", "SOURCE", "DIGEST"],
        &rows,
    );
    for e in doc["errors"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "error: {}: {}", cell(&e["file"]), cell(&e["error"]));
    }
    out
}

/// A submission built from flags (the short form).
pub fn short_form(
    operation: &str,
    payload: Value,
    images: &[String],
    execution: Value,
    job_id: Option<&str>,
) -> Value {
    let mut doc = json!({
        "operation": operation,
        "payload": payload,
        "images": images,
    });
    if execution.as_object().is_some_and(|o| !o.is_empty()) {
        doc["execution"] = execution;
    }
    if let Some(id) = job_id {
        doc["job_id"] = json!(id);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_of_the_builtin_handlers_render_as_tables() {
        let inspect = json!({"job_id": "j", "status": "succeeded", "output": {
            "schema_version": 1, "images": [], "warnings": ["dpkg status: truncated"],
            "operating_systems": [{
                "root": {"image": "debian.qcow2", "volume": "p2", "subvolume": null},
                "type": "linux", "distro": "debian", "product_name": "12.15",
                "major_version": 12, "minor_version": 15, "arch": "x86_64",
                "hostname": "deb", "applications": [{}, {}], "services": [{}], "users": []
            }]
        }});
        let text = result_table(&inspect);
        assert!(text.contains("debian.qcow2:p2"), "{text}");
        assert!(text.contains("12.15") && text.contains("x86_64") && text.contains("deb"));
        assert!(text.contains("warning: dpkg status: truncated"), "{text}");
        let profile = json!({"job_id": "j", "status": "succeeded", "output": {
            "risk_score": 37, "warnings": [],
            "summary": {"critical": 1, "high": 1, "medium": 0, "low": 1, "total": 3},
            "findings": [{"id": "SSH-001", "severity": "critical", "title": "root login",
                          "evidence": [{"path": "/etc/ssh/sshd_config", "line": 12}]}]
        }});
        let text = result_table(&profile);
        assert!(text.contains("risk score:   37 / 100"), "{text}");
        assert!(
            text.contains("SSH-001") && text.contains("/etc/ssh/sshd_config:12"),
            "{text}"
        );
        let other = json!({"job_id": "j", "status": "succeeded", "output": {"echo": 1}});
        assert!(result_table(&other).contains("\"echo\": 1"));
    }
}
