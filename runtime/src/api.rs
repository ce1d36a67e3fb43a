//! The HTTP API (axum on hyper) and the metrics endpoint.
//!
//! Every error is JSON: `{"error": {"code", "message", "field"?}}`, with 400 for a body that
//! is not JSON, 404 for unknown jobs, 409 for state conflicts, 413 for oversize bodies, 415
//! for other content types, 422 for invalid fields and 429 when the queue is full.

use crate::executor::now_ms;
use crate::service::{ApiError, DISK_FORMATS, FEATURES, JobService, job_view, rfc3339};
use crate::tenants::Tenant;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Extension, MatchedPath, Path, Query, Request, State,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use guestkit_store::{CancelOutcome, JobState, ListQuery};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest `wait` a client may ask for on the result endpoint.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The job service.
    pub service: Arc<JobService>,
    /// When the process started.
    pub started: Instant,
}

/// The tenant a request authenticated as (the implicit one on a single-tenant worker).
#[derive(Clone)]
struct Caller(Arc<Tenant>);

impl Caller {
    fn id(&self) -> &str {
        &self.0.id
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if self.status == 429 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The API router (everything under `/api/v1`).
pub fn router(state: ApiState) -> Router {
    // Everything but health and the API description needs a tenant's token (when the
    // worker has tenants).
    let api = Router::new()
        .route("/jobs", post(submit_job).get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/result", get(get_result))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/handlers", get(handlers))
        .route("/capabilities", get(capabilities))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            MAX_WAIT + Duration::from_secs(30),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(500, "internal", "internal error").into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// The metrics router (`/metrics`), served on its own address.
pub fn metrics_router(service: Arc<JobService>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let service = service.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    service.metrics().render(),
                )
            }
        }),
    )
}

async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state
        .service
        .metrics()
        .http_requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

/// Finds the caller's tenant from `Authorization: Bearer TOKEN`, or answers 401.
async fn authenticate(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.service.tenants().authenticate(header) {
        Ok(tenant) => {
            request.extensions_mut().insert(Caller(tenant));
            next.run(request).await
        }
        Err(e) => {
            state
                .service
                .metrics()
                .auth_failures
                .with_label_values(&[match e {
                    crate::tenants::AuthError::Missing => "missing",
                    crate::tenants::AuthError::Malformed => "malformed",
                    crate::tenants::AuthError::Unknown => "unknown",
                }])
                .inc();
            tracing::warn!(target: "audit", event = "auth_failure", reason = e.reason(),
                remote = %peer.ip(), method = %request.method(), path = %request.uri().path());
            let mut response = ApiError::new(401, "unauthorized", e.reason()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"guestkit-worker\""),
            );
            response
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(404, "not_found", "no such endpoint")
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError {
            status: 413,
            code: "body_too_large",
            field: Some("body".into()),
            message: format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
        }
    } else {
        ApiError {
            status: 400,
            code: "invalid_body",
            field: Some("body".into()),
            message: rejection.body_text(),
        }
    }
}

/// `?wait=SECONDS` of a submission or of a result request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitParams {
    /// Seconds to wait for the job to finish before answering.
    wait: Option<f64>,
}

/// The `wait` query parameter, if given; 400 naming the offending parameter otherwise.
fn wait_param(
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Option<Duration>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError {
        status: 400,
        code: "invalid_query",
        field: query_field(&e.body_text()).or(Some("wait".into())),
        message: e.body_text(),
    })?;
    params.wait.map(|w| wait_seconds(w, "wait")).transpose()
}

/// The `wait` a submission asks for: `?wait=SECONDS`, or RFC 7240's `Prefer: wait=SECONDS`
/// (the query wins). `None` when neither is given; the second value says whether the
/// answer should carry `Preference-Applied`.
fn submit_wait(
    params: Result<Query<WaitParams>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Option<(Duration, bool)>, ApiError> {
    if let Some(wait) = wait_param(params)? {
        return Ok(Some((wait, false)));
    }
    // `Prefer` may list several preferences; only `wait` is ours, others are ignored as
    // the RFC asks.
    for value in headers.get_all("prefer") {
        let Ok(value) = value.to_str() else { continue };
        for pref in value.split(',') {
            let pref = pref.split(';').next().unwrap_or_default().trim();
            if let Some((name, v)) = pref.split_once('=')
                && name.trim().eq_ignore_ascii_case("wait")
            {
                let w = v
                    .trim()
                    .trim_matches('"')
                    .parse::<f64>()
                    .map_err(|_| ApiError {
                        status: 400,
                        code: "invalid_header",
                        field: Some("prefer".into()),
                        message: "Prefer: wait must be a number of seconds".into(),
                    })?;
                return wait_seconds(w, "prefer").map(|d| Some((d, true)));
            }
        }
    }
    Ok(None)
}

/// A wait in seconds from a client, capped at [`MAX_WAIT`].
fn wait_seconds(w: f64, field: &str) -> Result<Duration, ApiError> {
    if w.is_finite() && w >= 0.0 {
        Ok(Duration::from_secs_f64(w).min(MAX_WAIT))
    } else {
        Err(ApiError {
            status: 400,
            code: "invalid_query",
            field: Some(field.into()),
            message: format!("{field}: wait must be a number of seconds >= 0"),
        })
    }
}

/// Stores a job and answers with it; with `?wait=S` (or `Prefer: wait=S`) the answer waits
/// up to S seconds for the job to finish and then carries its `result` too (the document
/// `GET /jobs/{id}/result` gives), which saves the client a second request.
async fn submit_job(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    params: Result<Query<WaitParams>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = submit_wait(params, &headers)?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError {
                status: 415,
                code: "unsupported_media_type",
                field: Some("content-type".into()),
                message: format!("expected application/json, got {ct:?}"),
            });
        }
    }
    let body = body.map_err(body_error)?;
    if state.service.executor().is_stopping() {
        return Err(ApiError::new(
            503,
            "shutting_down",
            "the worker is shutting down",
        ));
    }
    let remote = Some(peer.ip().to_string());
    let submitted = state
        .service
        .submit(&body, &caller.0, remote.as_deref())
        .await?;
    if submitted.created {
        tracing::info!(target: "audit", event = "submit", tenant = caller.id(),
            job = %submitted.job.id, operation = %submitted.job.operation,
            remote = remote.as_deref().unwrap_or("-"));
    }
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/api/v1/jobs/{}", submitted.job.id);
    let mut job = submitted.job;
    let mut result = None;
    if let Some((wait, _)) = wait {
        let tenant = Some(caller.id());
        if !job.state.is_terminal() {
            job = state.service.wait_terminal(tenant, &job.id, wait).await?;
        }
        if job.state.is_terminal() {
            result = Some(result_body(&state, tenant, &job).await?);
        }
    }
    let mut view = job_view(&job);
    if let (Some(result), Some(doc)) = (result, view.as_object_mut()) {
        doc.insert("result".into(), result);
    }
    let mut response = (status, Json(view)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Some((wait, true)) = wait
        && let Ok(value) = HeaderValue::from_str(&format!("wait={}", wait.as_secs_f64()))
    {
        response.headers_mut().insert("preference-applied", value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    operation: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_jobs(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError {
        status: 400,
        code: "invalid_query",
        field: query_field(&e.body_text()),
        message: e.body_text(),
    })?;
    let state_filter = match params.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<JobState>().map_err(|_| ApiError {
            status: 400,
            code: "invalid_query",
            field: Some("status".into()),
            message: format!(
                "unknown status {s:?}; one of queued, running, succeeded, failed, cancelled, timed_out"
            ),
        })?),
    };
    let limit = params.limit.unwrap_or(50);
    if !(1..=guestkit_store::MAX_PAGE).contains(&limit) {
        return Err(ApiError {
            status: 400,
            code: "invalid_query",
            field: Some("limit".into()),
            message: format!("limit must be 1..={}", guestkit_store::MAX_PAGE),
        });
    }
    let page = state
        .service
        .store()
        .list(ListQuery {
            tenant: Some(caller.id().into()),
            state: state_filter,
            operation: params.operation,
            limit,
            cursor: params.cursor,
        })
        .await
        .map_err(|e| match e {
            guestkit_store::Error::Invalid { field, message } => ApiError {
                status: 400,
                code: "invalid_query",
                field: Some(field.into()),
                message,
            },
            e => e.into(),
        })?;
    Ok(Json(json!({
        "jobs": page.jobs.iter().map(job_view).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

/// Pulls the parameter name out of serde's "unknown field `x`" message.
fn query_field(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Ids that cannot exist are answered 404 without a lookup.
fn check_id(id: &str) -> Result<(), ApiError> {
    if guestkit_protocol::is_valid_job_id(id) {
        Ok(())
    } else {
        Err(ApiError::job_not_found(id))
    }
}

async fn get_job(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let job = state.service.job(Some(caller.id()), &id).await?;
    Ok(Json(job_view(&job)))
}

async fn get_result(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    check_id(&id)?;
    let wait = wait_param(params)?.unwrap_or(Duration::ZERO);
    let tenant = Some(caller.id());
    let job = state.service.wait_terminal(tenant, &id, wait).await?;
    if !job.state.is_terminal() {
        return Err(ApiError::new(
            409,
            "not_finished",
            format!("job {id} is {}; it has no result yet", job.state),
        ));
    }
    Ok(Json(result_body(&state, tenant, &job).await?))
}

/// The result document of a finished job: output and usage when it succeeded, the error
/// otherwise. Read from the recent results kept in memory, else from the store.
async fn result_body(
    state: &ApiState,
    tenant: Option<&str>,
    job: &guestkit_store::Job,
) -> Result<Value, ApiError> {
    let id = &job.id;
    if job.state != JobState::Succeeded {
        return Ok(json!({
            "job_id": id,
            "status": job.state.as_str(),
            "error": job.last_error,
            "usage": job.usage,
            "attempt": job.attempt,
            "completed_at": job.finished_at.map(rfc3339),
        }));
    }
    let kept = state.service.executor().recent().get(tenant, id);
    let result = match kept.as_ref().and_then(|f| f.result.clone()) {
        Some(result) => result,
        None => state
            .service
            .store()
            .result(tenant, id)
            .await?
            .ok_or_else(|| ApiError::new(500, "internal", "succeeded job without result"))?,
    };
    Ok(json!({
        "job_id": id,
        "status": "succeeded",
        "output": result.output,
        "usage": result.usage,
        "attempt": job.attempt,
        "completed_at": rfc3339(result.completed_at),
    }))
}

async fn cancel_job(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let outcome = state.service.store().cancel(Some(caller.id()), &id).await?;
    let executor = state.service.executor();
    tracing::info!(target: "audit", event = "cancel", tenant = caller.id(), job = %id,
        outcome = ?outcome);
    match outcome {
        CancelOutcome::Cancelled => {
            executor.signal(&id);
            Ok((
                StatusCode::OK,
                Json(json!({"id": id, "status": "cancelled"})),
            )
                .into_response())
        }
        CancelOutcome::Requested => {
            let here = executor.cancel_local(&id);
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "status": "cancelling", "running_here": here})),
            )
                .into_response())
        }
        CancelOutcome::AlreadyFinished(s) => Err(ApiError::new(
            409,
            "already_finished",
            format!("job {id} already finished: {s}"),
        )),
        CancelOutcome::NotCancellable => Err(ApiError::new(
            409,
            "not_cancellable",
            format!("job {id} was submitted with execution.cancellable = false"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventParams {
    /// Only events after this sequence number (like `Last-Event-ID`).
    after: Option<i64>,
}

async fn job_events(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<EventParams>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    check_id(&id)?;
    let Query(params) = params.map_err(|e| ApiError {
        status: 400,
        code: "invalid_query",
        field: Some("after".into()),
        message: e.body_text(),
    })?;
    // Existence and ownership check before streaming anything.
    state.service.job(Some(caller.id()), &id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .or(params.after)
        .unwrap_or(0);
    let watch = state.service.executor().watch(&id);
    let stream = event_stream(state.service.clone(), id, after, watch);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct StreamState {
    service: Arc<JobService>,
    id: String,
    after: i64,
    pending: std::collections::VecDeque<SseEvent>,
    watch: crate::watchers::JobWatch,
    finished: bool,
}

/// Streams a job's events until it is terminal and every event has been sent.
fn event_stream(
    service: Arc<JobService>,
    id: String,
    after: i64,
    watch: crate::watchers::JobWatch,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let state = StreamState {
        service,
        id,
        after,
        pending: Default::default(),
        watch,
        finished: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok(event), st));
            }
            if st.finished {
                return None;
            }
            let store = st.service.store();
            match store.events_since(&st.id, st.after, 200).await {
                Ok(events) if !events.is_empty() => {
                    for e in events {
                        st.after = e.seq;
                        let mut data = e.data;
                        if let Some(obj) = data.as_object_mut() {
                            obj.insert("at".into(), json!(rfc3339(e.at)));
                        }
                        let event = SseEvent::default()
                            .id(e.seq.to_string())
                            .event(e.kind)
                            .data(data.to_string());
                        st.pending.push_back(event);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(job = %st.id, error = %e, "reading events failed");
                }
            }
            // No new events: end once the job is terminal, else wait for news.
            match store.get(None, &st.id).await {
                Ok(Some(job)) if job.state.is_terminal() => {
                    // One more read catches events written between the two queries.
                    if let Ok(events) = store.events_since(&st.id, st.after, 1).await
                        && !events.is_empty()
                    {
                        continue;
                    }
                    st.finished = true;
                    let end = SseEvent::default().event("end").data(
                        json!({"status": job.state.as_str(), "at": rfc3339(now_ms())}).to_string(),
                    );
                    return Some((Ok(end), st));
                }
                Ok(None) => return None,
                _ => {}
            }
            tokio::select! {
                _ = st.watch.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    })
}

async fn handlers(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let snapshot = state.service.registry().snapshot();
    let tenant = &caller.0;
    let multi = state.service.tenants().is_multi();
    let private = snapshot.private.get(&tenant.id);
    // A tenant sees the shared handlers it may run and its own private ones; load errors
    // of the shared directory are the operator's business (shown on single-tenant workers).
    let shared = snapshot.handlers.iter().filter(|h| {
        h.meta
            .operations
            .iter()
            .any(|op| tenant.may_run(&h.meta.name, op))
    });
    let handlers: Vec<Value> = shared
        .map(|h| handler_view(h, false))
        .chain(
            private
                .into_iter()
                .flat_map(|p| p.handlers.iter().map(|h| handler_view(h, true))),
        )
        .collect();
    let shared_errors = if multi { &[][..] } else { &snapshot.errors[..] };
    let errors: Vec<Value> = shared_errors
        .iter()
        .chain(private.into_iter().flat_map(|p| p.errors.iter()))
        .map(|e| {
            json!({
                "file": e.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                "digest": e.digest.as_ref().map(|d| format!("sha256:{d}")),
                "error": e.error,
            })
        })
        .collect();
    Json(json!({
        "generation": snapshot.generation,
        "handlers": handlers,
        "errors": errors,
    }))
}

fn handler_view(h: &crate::registry::LoadedHandler, private: bool) -> Value {
    let (source, path) = match &h.source {
        crate::registry::HandlerSource::Builtin(name) => ("builtin", name.clone()),
        crate::registry::HandlerSource::File(p) => (
            if private { "private" } else { "directory" },
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    let loaded_at = h
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| rfc3339(d.as_millis() as i64))
        .unwrap_or_default();
    json!({
        "name": h.meta.name,
        "version": h.meta.version,
        "description": h.meta.description,
        "digest": format!("sha256:{}", h.digest),
        "operations": h.meta.operations,
        "payload_schema": h.meta.payload_schema,
        "source": source,
        "file": path,
        "size_bytes": h.size,
        "loaded_at": loaded_at,
    })
}

async fn capabilities(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let service = &state.service;
    let executor = service.executor();
    let config = executor.config();
    let limits = &config.limits;
    Json(json!({
        "worker_id": config.worker_id,
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_versions": ["1.0"],
        "operations": service.operations_for(&caller.0),
        "capabilities": service.capability_names(),
        "features": FEATURES,
        "disk_formats": DISK_FORMATS,
        "checksum_algorithms": ["sha256", "sha512", "sha1", "md5", "blake3"],
        "resources": {
            "max_concurrent_jobs": config.max_concurrent,
            "fuel_per_job": limits.fuel,
            "memory_bytes_per_job": limits.memory_bytes,
            "max_output_bytes": limits.max_output_bytes,
            "max_body_bytes": MAX_BODY_BYTES,
        },
    }))
}

async fn health(State(state): State<ApiState>) -> Response {
    let service = &state.service;
    let store_ok = match service.store().get(None, "health-probe").await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    let stopping = service.executor().is_stopping();
    let healthy = store_ok.is_ok() && !stopping;
    let body = json!({
        "status": if healthy { "ok" } else if stopping { "stopping" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "worker_id": service.executor().config().worker_id,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "store": match &store_ok { Ok(()) => json!("ok"), Err(e) => json!(e) },
        "handlers": service.registry().snapshot().handlers.len(),
        "running_jobs": service.executor().running(),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
