//! The one implementation of [`crate::JobStore`], expanded once per backend.
//!
//! PostgreSQL is reached through sqlx and SQLite through rusqlite, run in-process (see
//! `lite.rs`, which offers the same query calls), and there is no executor type shared by
//! the two. A macro keeps a single body with identical SQL; the backends differ only in the
//! few items each store type provides: `statement()` and its `Query` type, `writer()`,
//! `reader()`, `scan_reader()` (for reads whose cost grows with the table), `begin()`,
//! `lock_migrations()`, `lock_claims()`, `DIALECT`, and the `FOR UPDATE SKIP LOCKED` suffix
//! passed here.

macro_rules! impl_job_store {
    ($store:ty, $conn:ty, skip_locked = $skip:literal) => {
        use std::collections::{BTreeMap, HashMap, HashSet};
        use std::fmt::Write as _;
        use std::time::Duration;

        use serde_json::{Value, json};
        #[allow(unused_imports, reason = "rows of the SQLite driver read with their own `try_get`")]
        use sqlx::Row as _;
        use sqlx::AssertSqlSafe;

        use crate::common::{
            EVENT_CHUNK, INSERT_CHUNK, JobRow, MAX_CLAIM, MAX_EVENTS, MAX_NAME, MAX_OPERATIONS,
            MAX_PAGE,
            SWEEP_LIMIT, check_event, completed_job, duration_ms, event_from_row, job_from_row,
            json_text, now_ms, placeholders, queued_job, result_from_row, sort_claimed, state_event,
            truncate_message,
        };
        use crate::error::{DbContext as _, Error, Result};
        use crate::types::*;

        /// Binds the columns `INSERT INTO jobs` takes from `row`, id to document, in order.
        fn bind_job_row<'q>(q: Query<'q>, row: &'q JobRow) -> Query<'q> {
            q.bind(row.id.as_str())
                .bind(row.tenant.as_str())
                .bind(row.operation.as_str())
                .bind(row.payload.as_str())
                .bind(row.images.as_str())
                .bind(row.priority)
                .bind(row.max_attempts)
                .bind(row.timeout_ms)
                .bind(row.deadline_ms)
                .bind(row.idempotency_key.as_deref())
                .bind(row.cancellable)
                .bind(row.document.as_str())
        }

        /// An event waiting to be written with the transaction that caused it.
        struct PendingEvent {
            job_id: String,
            kind: std::borrow::Cow<'static, str>,
            data: String,
        }

        impl PendingEvent {
            fn state(job: &Job, reason: &str) -> Self {
                PendingEvent {
                    job_id: job.id.clone(),
                    kind: "state".into(),
                    data: state_event(job, reason),
                }
            }
        }

        impl $store {
            /// Writes events with multi-row INSERTs (one round trip per chunk).
            async fn insert_events(
                conn: &mut $conn,
                events: &[PendingEvent],
                at: i64,
            ) -> Result<()> {
                for chunk in events.chunks(EVENT_CHUNK) {
                    let mut sql =
                        String::from("INSERT INTO job_events (job_id, kind, data, at) VALUES ");
                    for i in 0..chunk.len() {
                        let sep = if i == 0 { "" } else { ", " };
                        // Writing to a String cannot fail.
                        let values = placeholders(Self::NUMBERED, i * 4 + 1, 4);
                        let _ = write!(sql, "{sep}({values})");
                    }
                    let mut query = statement(AssertSqlSafe(sql));
                    for event in chunk {
                        query = query
                            .bind(event.job_id.as_str())
                            .bind(event.kind.as_ref())
                            .bind(event.data.as_str())
                            .bind(at);
                    }
                    query.execute(&mut *conn).await.ctx("writing job events")?;
                }
                Ok(())
            }

            async fn find_by_key(conn: &mut $conn, tenant: &str, key: &str) -> Result<Option<Job>> {
                let row = statement(concat!(
                    "SELECT ",
                    crate::common::job_cols!(),
                    " FROM jobs WHERE tenant = $1 AND idempotency_key = $2"
                ))
                .bind(tenant)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .ctx("looking up an idempotency key")?;
                row.as_ref().map(job_from_row).transpose()
            }

            /// Inserts one job inside the caller's transaction.
            async fn submit_in(conn: &mut $conn, row: &JobRow, now: i64) -> Result<Submitted> {
                if let Some(key) = &row.idempotency_key {
                    if let Some(job) = Self::find_by_key(conn, &row.tenant, key).await? {
                        return Ok(Submitted { job, created: false });
                    }
                }
                // DO NOTHING instead of catching a unique violation: on PostgreSQL a violation
                // would abort the whole transaction, and a batch must survive one bad job.
                let insert = statement(concat!(
                    "INSERT INTO jobs (id, tenant, operation, payload, images, priority, \
                     max_attempts, timeout_ms, deadline_ms, idempotency_key, cancellable, \
                     document, state, attempt, created_at, updated_at, run_after, \
                     fencing_token, cancel_requested) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', 0, \
                     $13, $13, $13, 0, FALSE) ON CONFLICT DO NOTHING RETURNING ",
                    crate::common::job_cols!()
                ));
                let inserted = bind_job_row(insert, row)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await
                    .ctx("inserting a job")?;
                if let Some(inserted) = inserted {
                    return Ok(Submitted {
                        job: job_from_row(&inserted)?,
                        created: true,
                    });
                }
                // A concurrent submit with the same key may have won the race.
                if let Some(key) = &row.idempotency_key {
                    if let Some(job) = Self::find_by_key(conn, &row.tenant, key).await? {
                        return Ok(Submitted { job, created: false });
                    }
                }
                Err(Error::Conflict { field: "id" })
            }

            /// Stores many jobs inside the caller's transaction; see `submit_batch`.
            async fn submit_many_in(
                conn: &mut $conn,
                jobs: &[NewJob],
                queue_caps: &[(String, u64)],
                now: i64,
                events: &mut Vec<PendingEvent>,
            ) -> Result<Vec<Result<Submitted>>> {
                let mut rooms = Self::queue_rooms(conn, jobs, queue_caps).await?;
                // Resolved in bulk: validation and in-batch duplicates first, then one query
                // per chunk for known idempotency keys and one multi-row INSERT per chunk.
                // Whatever the bulk path cannot settle (races, duplicates of a job that
                // failed) goes through the one-job path inside the same transaction.
                let mut results: Vec<Option<Result<Submitted>>> = Vec::with_capacity(jobs.len());
                let mut rows = Vec::with_capacity(jobs.len());
                let mut bulk = Vec::new();
                let mut single = Vec::new();
                let mut ids = HashSet::new();
                let mut keys = HashSet::new();
                for (i, job) in jobs.iter().enumerate() {
                    let full = rooms.get_mut(&job.tenant).is_some_and(|(room, _)| {
                        let full = *room == 0;
                        *room = room.saturating_sub(1);
                        full
                    });
                    if full {
                        let limit = rooms.get(&job.tenant).map(|(_, l)| *l).unwrap_or(0);
                        results.push(Some(Err(Error::QuotaExceeded {
                            tenant: job.tenant.clone(),
                            quota: "queued",
                            limit,
                        })));
                        rows.push(None);
                        continue;
                    }
                    match JobRow::new(job) {
                        Err(e) => {
                            results.push(Some(Err(e)));
                            rows.push(None);
                        }
                        Ok(row) => {
                            let key = row.idempotency_key.clone().map(|k| (row.tenant.clone(), k));
                            if key.as_ref().is_some_and(|k| keys.contains(k)) {
                                // Same key earlier in this batch: answered after it is stored.
                                single.push(i);
                            } else if !ids.insert(row.id.clone()) {
                                results.push(Some(Err(Error::Conflict { field: "id" })));
                                rows.push(None);
                                continue;
                            } else {
                                if let Some(key) = key {
                                    keys.insert(key);
                                }
                                bulk.push(i);
                            }
                            results.push(None);
                            rows.push(Some(row));
                        }
                    }
                }
                for chunk in bulk.chunks(INSERT_CHUNK) {
                    let mut existing = HashMap::new();
                    // One lookup per tenant, so the unique (tenant, idempotency_key) index
                    // answers it; keys alone are not indexed.
                    let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                    for row in chunk.iter().filter_map(|&i| rows[i].as_ref()) {
                        if let Some(key) = row.idempotency_key.as_deref() {
                            by_tenant.entry(row.tenant.as_str()).or_default().push(key);
                        }
                    }
                    for (tenant, keys) in by_tenant {
                        let sql = format!(
                            concat!(
                                "SELECT ",
                                crate::common::job_cols!(),
                                " FROM jobs WHERE tenant = {} AND idempotency_key IN ({})"
                            ),
                            placeholders(Self::NUMBERED, 1, 1),
                            placeholders(Self::NUMBERED, 2, keys.len())
                        );
                        let mut q = statement(AssertSqlSafe(sql)).bind(tenant);
                        for key in keys {
                            q = q.bind(key);
                        }
                        let found = q.fetch_all(&mut *conn).await;
                        for found in found.ctx("looking up idempotency keys")? {
                            let job = job_from_row(&found)?;
                            if let Some(key) = job.idempotency_key.clone() {
                                existing.insert((job.tenant.clone(), key), job);
                            }
                        }
                    }
                    let mut fresh = Vec::new();
                    for &i in chunk {
                        let Some(row) = rows[i].as_ref() else { continue };
                        let key = row.idempotency_key.clone().map(|k| (row.tenant.clone(), k));
                        match key.and_then(|k| existing.remove(&k)) {
                            Some(job) => results[i] = Some(Ok(Submitted { job, created: false })),
                            None => fresh.push(i),
                        }
                    }
                    if fresh.is_empty() {
                        continue;
                    }
                    let mut sql = String::from(
                        "INSERT INTO jobs (id, tenant, operation, payload, images, priority, \
                         max_attempts, timeout_ms, deadline_ms, idempotency_key, cancellable, \
                         document, state, attempt, created_at, updated_at, run_after, \
                         fencing_token, cancel_requested) VALUES ",
                    );
                    for n in 0..fresh.len() {
                        let sep = if n == 0 { "" } else { ", " };
                        let _ = write!(
                            sql,
                            "{sep}({}, 'queued', 0, {}, 0, FALSE)",
                            placeholders(Self::NUMBERED, 1 + n * 15, 12),
                            placeholders(Self::NUMBERED, 13 + n * 15, 3)
                        );
                    }
                    sql.push_str(" ON CONFLICT DO NOTHING RETURNING seq, id");
                    let mut q = statement(AssertSqlSafe(sql));
                    for &i in &fresh {
                        let Some(row) = rows[i].as_ref() else { continue };
                        q = bind_job_row(q, row).bind(now).bind(now).bind(now);
                    }
                    let mut inserted = HashMap::new();
                    for found in q.fetch_all(&mut *conn).await.ctx("inserting jobs")? {
                        let seq: i64 = found.try_get("seq").ctx("inserting jobs")?;
                        let id: String = found.try_get("id").ctx("inserting jobs")?;
                        inserted.insert(id, seq);
                    }
                    for &i in &fresh {
                        let Some(row) = rows[i].as_ref() else { continue };
                        match inserted.remove(&row.id) {
                            Some(seq) => {
                                let job = queued_job(row, &jobs[i], seq, now);
                                events.push(PendingEvent::state(&job, "submitted"));
                                results[i] = Some(Ok(Submitted { job, created: true }));
                            }
                            // Taken by a job outside this batch: settle it one by one.
                            None => single.push(i),
                        }
                    }
                }
                single.sort_unstable();
                for i in single {
                    let Some(row) = rows[i].as_ref() else { continue };
                    match Self::submit_in(conn, row, now).await {
                        Ok(submitted) => {
                            if submitted.created {
                                events.push(PendingEvent::state(&submitted.job, "submitted"));
                            }
                            results[i] = Some(Ok(submitted));
                        }
                        Err(e @ Error::Conflict { .. }) => results[i] = Some(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
                Ok(results
                    .into_iter()
                    .map(|r| r.unwrap_or(Err(Error::Conflict { field: "id" })))
                    .collect())
            }

            /// Sweeps (when due) and leases jobs inside the caller's transaction; see `claim`.
            #[allow(clippy::too_many_arguments)]
            async fn claim_in(
                &self,
                conn: &mut $conn,
                worker: &str,
                max: usize,
                lease: Duration,
                operations: Option<&[String]>,
                tenant_caps: Option<&[TenantCap]>,
                now: i64,
                events: &mut Vec<PendingEvent>,
            ) -> Result<Vec<Lease>> {
                if worker.is_empty() || worker.len() > MAX_NAME {
                    return Err(Error::invalid("worker", format!("must be 1..={MAX_NAME} bytes")));
                }
                if let Some(ops) = operations {
                    if ops.len() > MAX_OPERATIONS {
                        return Err(Error::invalid(
                            "operations",
                            format!("more than {MAX_OPERATIONS} names"),
                        ));
                    }
                }
                let max = max.min(MAX_CLAIM);
                if self.sweep.due(now) {
                    Self::sweep(conn, now, events).await?;
                }
                let ops: &[String] = operations.unwrap_or(&[]);
                let mut jobs = Vec::new();
                if max > 0 && (operations.is_none() || !ops.is_empty()) {
                    let filter = if operations.is_some() {
                        format!(" AND operation IN ({})", placeholders(true, 5, ops.len()))
                    } else {
                        String::new()
                    };
                    // The candidates are picked once in a MATERIALIZED CTE: with a plain
                    // `seq IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL may
                    // re-run the subquery per outer row and take more than n jobs.
                    let mut fair: Vec<i64> = Vec::new();
                    let picked = match tenant_caps {
                        None => format!(
                            concat!(
                                "picked AS MATERIALIZED (SELECT seq AS pick FROM jobs \
                                 WHERE state = 'queued' AND run_after <= $3 \
                                 AND (deadline_ms IS NULL OR deadline_ms > $3){filter} \
                                 ORDER BY priority DESC, seq LIMIT $4",
                                $skip,
                                ")"
                            ),
                            filter = filter
                        ),
                        // Round-robin across tenants, chosen by `fair_candidates`.
                        Some(caps) => {
                            let seqs = self.fair_candidates(conn, max, operations, caps, now).await?;
                            if seqs.is_empty() {
                                return Ok(Vec::new());
                            }
                            fair = seqs;
                            format!(
                                "picked AS MATERIALIZED (SELECT seq AS pick FROM jobs \
                                 WHERE seq IN ({}){filter})",
                                placeholders(true, 5 + ops.len(), fair.len())
                            )
                        }
                    };
                    let sql = format!(
                        concat!(
                            "WITH {picked} UPDATE jobs SET state = 'running', \
                             attempt = attempt + 1, \
                             fencing_token = fencing_token + 1, lease_owner = $1, \
                             lease_expires_at = $2, started_at = $3, updated_at = $3 \
                             WHERE state = 'queued' AND seq IN (SELECT pick FROM picked) \
                             RETURNING ",
                            crate::common::job_cols!()
                        ),
                        picked = picked
                    );
                    let mut q = statement(AssertSqlSafe(sql))
                        .bind(worker)
                        .bind(now.saturating_add(duration_ms(lease)))
                        .bind(now)
                        .bind(i64::try_from(max).unwrap_or(i64::MAX));
                    for op in ops {
                        q = q.bind(op.as_str());
                    }
                    for seq in &fair {
                        q = q.bind(*seq);
                    }
                    let rows = q.fetch_all(&mut *conn).await.ctx("claiming jobs")?;
                    jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
                    sort_claimed(&mut jobs);
                    for job in &jobs {
                        events.push(PendingEvent {
                            job_id: job.id.clone(),
                            kind: "state".into(),
                            data: json!({
                                "state": job.state.as_str(),
                                "attempt": job.attempt,
                                "reason": "claimed",
                                "worker": worker,
                            })
                            .to_string(),
                        });
                    }
                }
                Ok(jobs
                    .into_iter()
                    .map(|job| Lease {
                        token: job.fencing_token,
                        worker: worker.to_owned(),
                        job,
                    })
                    .collect())
            }

            /// The jobs a multi-tenant claim takes, in order: every listed tenant's best
            /// runnable job (priority, then age) first, the tenants running the fewest jobs
            /// first; then every tenant's second; and so on, up to `max`, never more than a
            /// tenant's cap minus what it runs now. One indexed query per tenant (in one
            /// statement), so the cost follows the jobs taken, not the length of the queue.
            async fn fair_candidates(
                &self,
                conn: &mut $conn,
                max: usize,
                operations: Option<&[String]>,
                caps: &[TenantCap],
                now: i64,
            ) -> Result<Vec<i64>> {
                Self::lock_claims(conn).await?;
                let mut running: HashMap<String, i64> = HashMap::new();
                let rows = statement(
                    "SELECT tenant, COUNT(*) AS n FROM jobs WHERE state = 'running' GROUP BY tenant",
                )
                .fetch_all(&mut *conn)
                .await
                .ctx("counting running jobs")?;
                for row in &rows {
                    let tenant: String = row.try_get("tenant").ctx("counting running jobs")?;
                    let n: i64 = row.try_get("n").ctx("counting running jobs")?;
                    running.insert(tenant, n);
                }
                let ops: &[String] = operations.unwrap_or(&[]);
                let filter = if operations.is_some() {
                    format!(" AND operation IN ({})", placeholders(true, 2, ops.len()))
                } else {
                    String::new()
                };
                let mut arms = Vec::new();
                let mut binds: Vec<(&str, i64)> = Vec::new();
                for cap in caps {
                    let tenant = &cap.tenant;
                    let busy = running.get(tenant).copied().unwrap_or(0);
                    let room = (i64::from(cap.max_running) - busy)
                        .min(i64::from(cap.max_claim))
                        .min(i64::try_from(max).unwrap_or(i64::MAX));
                    if room <= 0 {
                        continue;
                    }
                    let t = 2 + ops.len() + binds.len() * 2;
                    arms.push(format!(
                        "SELECT * FROM (SELECT seq, tenant, priority FROM jobs \
                         WHERE state = 'queued' AND tenant = ${t} AND run_after <= $1 \
                         AND (deadline_ms IS NULL OR deadline_ms > $1){filter} \
                         ORDER BY priority DESC, seq LIMIT ${}) AS arm{}",
                        t + 1,
                        binds.len()
                    ));
                    binds.push((tenant.as_str(), room));
                }
                if arms.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = statement(AssertSqlSafe(arms.join(" UNION ALL "))).bind(now);
                for op in ops {
                    q = q.bind(op.as_str());
                }
                for (tenant, room) in &binds {
                    q = q.bind(*tenant).bind(*room);
                }
                let rows = q.fetch_all(&mut *conn).await.ctx("picking jobs per tenant")?;
                let mut by_tenant: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
                for row in &rows {
                    let seq: i64 = row.try_get("seq").ctx("picking jobs per tenant")?;
                    let tenant: String = row.try_get("tenant").ctx("picking jobs per tenant")?;
                    let priority: i64 = row.try_get("priority").ctx("picking jobs per tenant")?;
                    by_tenant.entry(tenant).or_default().push((priority, seq));
                }
                // (rank within its tenant, tenant's running jobs, priority, seq)
                let mut ranked: Vec<(usize, i64, i64, i64)> = Vec::new();
                for (tenant, mut jobs) in by_tenant {
                    jobs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                    let busy = running.get(&tenant).copied().unwrap_or(0);
                    for (rank, (priority, seq)) in jobs.into_iter().enumerate() {
                        ranked.push((rank, busy, priority, seq));
                    }
                }
                ranked.sort_by(|a, b| {
                    a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2)).then(a.3.cmp(&b.3))
                });
                ranked.truncate(max);
                Ok(ranked.into_iter().map(|r| r.3).collect())
            }

            /// Records progress inside the caller's transaction; see `set_progress`.
            async fn progress_in(
                conn: &mut $conn,
                lease: &Lease,
                done: u64,
                total: u64,
                message: Option<&str>,
                now: i64,
                events: &mut Vec<PendingEvent>,
            ) -> Result<()> {
                let done = i64::try_from(done).map_err(|_| Error::invalid("done", "out of range"))?;
                let total =
                    i64::try_from(total).map_err(|_| Error::invalid("total", "out of range"))?;
                let message = message.map(truncate_message);
                let row = statement(
                    "UPDATE jobs SET progress_done = $1, progress_total = $2, \
                     progress_message = $3, updated_at = $4 \
                     WHERE id = $5 AND fencing_token = $6 AND state = 'running' RETURNING seq",
                )
                .bind(done)
                .bind(total)
                .bind(message.as_deref())
                .bind(now)
                .bind(lease.job.id.as_str())
                .bind(lease.token)
                .fetch_optional(&mut *conn)
                .await
                .ctx("recording progress")?;
                if row.is_none() {
                    return Err(Error::LeaseLost {
                        id: lease.job.id.clone(),
                        token: lease.token,
                    });
                }
                events.push(PendingEvent {
                    job_id: lease.job.id.clone(),
                    kind: "progress".into(),
                    data: json!({ "done": done, "total": total, "message": message }).to_string(),
                });
                Ok(())
            }

            /// Checks events and locks their jobs inside the caller's transaction, adding the
            /// valid events of known jobs to `out`; see `append_events`.
            async fn events_in(
                conn: &mut $conn,
                events: &[(String, String, Value)],
                now: i64,
                out: &mut Vec<PendingEvent>,
            ) -> Result<usize> {
                let mut pending = Vec::with_capacity(events.len());
                for (job_id, kind, data) in events {
                    // An invalid event is dropped alone; the others are written.
                    if let Ok(text) = check_event(kind, data) {
                        pending.push(PendingEvent {
                            job_id: job_id.clone(),
                            kind: kind.clone().into(),
                            data: text,
                        });
                    }
                }
                if pending.is_empty() {
                    return Ok(0);
                }
                let mut ids: Vec<&str> = pending.iter().map(|e| e.job_id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                let mut known = HashSet::new();
                // Lock each job row once, in id order (no deadlock between two writers), so
                // a job's events get their sequence numbers in commit order.
                for chunk in ids.chunks(INSERT_CHUNK) {
                    let sql = format!(
                        "WITH locked AS (SELECT seq FROM jobs WHERE id IN ({}) ORDER BY id{}) \
                         UPDATE jobs SET updated_at = $1 \
                         WHERE seq IN (SELECT seq FROM locked) RETURNING id",
                        placeholders(true, 2, chunk.len()),
                        Self::LOCK_ROWS,
                    );
                    let mut q = statement(AssertSqlSafe(sql)).bind(now);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    for row in q.fetch_all(&mut *conn).await.ctx("locking jobs for events")? {
                        let id: String = row.try_get("id").ctx("locking jobs for events")?;
                        known.insert(id);
                    }
                }
                pending.retain(|e| known.contains(&e.job_id));
                let written = pending.len();
                out.extend(pending);
                Ok(written)
            }

            /// For each capped tenant with jobs in `jobs`: (room left in its queue, cap).
            async fn queue_rooms(
                conn: &mut $conn,
                jobs: &[NewJob],
                queue_caps: &[(String, u64)],
            ) -> Result<HashMap<String, (u64, u64)>> {
                let mut rooms = HashMap::new();
                let mut tenants: Vec<&str> = jobs
                    .iter()
                    .map(|j| j.tenant.as_str())
                    .filter(|t| queue_caps.iter().any(|(c, _)| c == t))
                    .collect();
                tenants.sort_unstable();
                tenants.dedup();
                if tenants.is_empty() {
                    return Ok(rooms);
                }
                let sql = format!(
                    "SELECT tenant, COUNT(*) AS n FROM jobs WHERE state = 'queued' \
                     AND tenant IN ({}) GROUP BY tenant",
                    placeholders(true, 1, tenants.len())
                );
                let mut q = statement(AssertSqlSafe(sql));
                for t in &tenants {
                    q = q.bind(*t);
                }
                let mut queued = HashMap::new();
                for row in q.fetch_all(&mut *conn).await.ctx("counting queued jobs")? {
                    let tenant: String = row.try_get("tenant").ctx("counting queued jobs")?;
                    let n: i64 = row.try_get("n").ctx("counting queued jobs")?;
                    queued.insert(tenant, u64::try_from(n).unwrap_or(0));
                }
                for t in tenants {
                    if let Some((_, cap)) = queue_caps.iter().find(|(c, _)| c == t) {
                        let used = queued.get(t).copied().unwrap_or(0);
                        rooms.insert(t.to_owned(), (cap.saturating_sub(used), *cap));
                    }
                }
                Ok(rooms)
            }

            /// Moves overdue queued jobs to timed_out and settles expired leases.
            async fn sweep(
                conn: &mut $conn,
                now: i64,
                events: &mut Vec<PendingEvent>,
            ) -> Result<()> {
                let deadline_error = json!({
                    "code": "deadline_exceeded",
                    "message": "the job's deadline passed before it could run",
                })
                .to_string();
                let overdue = statement(concat!(
                    "WITH picked AS MATERIALIZED (SELECT seq AS pick FROM jobs \
                     WHERE state = 'queued' AND deadline_ms IS NOT NULL AND deadline_ms <= $1 \
                     LIMIT $3",
                    $skip,
                    ") UPDATE jobs SET state = 'timed_out', finished_at = $1, updated_at = $1, \
                     last_error = $2 WHERE state = 'queued' \
                     AND seq IN (SELECT pick FROM picked) RETURNING ",
                    crate::common::job_cols!()
                ))
                .bind(now)
                .bind(deadline_error.as_str())
                .bind(SWEEP_LIMIT)
                .fetch_all(&mut *conn)
                .await
                .ctx("timing out overdue jobs")?;
                for row in &overdue {
                    events.push(PendingEvent::state(&job_from_row(row)?, "deadline passed"));
                }

                let expired = statement(concat!(
                    "SELECT ",
                    crate::common::job_cols!(),
                    " FROM jobs WHERE state = 'running' AND lease_expires_at < $1 \
                     ORDER BY lease_expires_at LIMIT $2",
                    $skip
                ))
                .bind(now)
                .bind(SWEEP_LIMIT)
                .fetch_all(&mut *conn)
                .await
                .ctx("finding expired leases")?;
                for row in &expired {
                    let job = job_from_row(row)?;
                    // A worker that dies mid-attempt is not the job's fault: the attempt is
                    // given back, up to MAX_LOST_LEASES times, after which a job that keeps
                    // losing its worker (perhaps by crashing it) is charged for it.
                    let uncounted = job.fencing_token - i64::from(job.attempt);
                    let forgive = uncounted < crate::common::MAX_LOST_LEASES;
                    let (state, error) = if job.deadline_ms.is_some_and(|d| d <= now) {
                        (JobState::TimedOut, Some(deadline_error.clone()))
                    } else if job.cancel_requested {
                        (JobState::Cancelled, None)
                    } else if !forgive && job.attempt >= job.max_attempts {
                        let error = json!({
                            "code": "lease_expired",
                            "message":
                                "the worker running the last attempt stopped renewing its lease",
                        });
                        (JobState::Failed, Some(error.to_string()))
                    } else {
                        (JobState::Queued, None)
                    };
                    let finished_at = state.is_terminal().then_some(now);
                    let settled = statement(concat!(
                        "UPDATE jobs SET state = $1, finished_at = $2, updated_at = $3, \
                         run_after = $3, last_error = COALESCE($4, last_error), \
                         lease_owner = NULL, lease_expires_at = NULL, attempt = attempt - $7 \
                         WHERE seq = $5 AND fencing_token = $6 AND state = 'running' RETURNING ",
                        crate::common::job_cols!()
                    ))
                    .bind(state.as_str())
                    .bind(finished_at)
                    .bind(now)
                    .bind(error.as_deref())
                    .bind(job.seq)
                    .bind(job.fencing_token)
                    .bind(i64::from(forgive && state == JobState::Queued))
                    .fetch_optional(&mut *conn)
                    .await
                    .ctx("settling an expired lease")?;
                    if let Some(row) = settled {
                        events.push(PendingEvent::state(&job_from_row(&row)?, "lease expired"));
                    }
                }
                Ok(())
            }

            /// Applies outcomes inside the caller's transaction: one UPDATE ... FROM (VALUES)
            /// per chunk, one multi-row INSERT of results, fenced per job. An item whose
            /// lease is lost gets `LeaseLost` and writes nothing; the others are unaffected.
            async fn complete_many(
                &self,
                conn: &mut $conn,
                items: &[(&Lease, &Outcome)],
                now: i64,
                events: &mut Vec<PendingEvent>,
            ) -> Result<Vec<Result<Job>>> {
                struct Planned<'a> {
                    index: usize,
                    lease: &'a Lease,
                    state: JobState,
                    error: Option<String>,
                    usage: String,
                    output: Option<String>,
                    run_after: Option<i64>,
                }
                let lost = |lease: &Lease| Error::LeaseLost {
                    id: lease.job.id.clone(),
                    token: lease.token,
                };
                let mut results: Vec<Option<Result<Job>>> = Vec::with_capacity(items.len());
                let mut planned = Vec::new();
                let mut seen = HashSet::new();
                for (index, (lease, outcome)) in items.iter().enumerate() {
                    let plan = self.plan_outcome(lease, outcome, now);
                    match plan {
                        Err(e) => results.push(Some(Err(e))),
                        // The same job twice: only the first completion can hold the lease.
                        Ok(_) if !seen.insert(lease.job.id.as_str()) => {
                            results.push(Some(Err(lost(lease))))
                        }
                        Ok((state, error, usage, output, run_after)) => {
                            results.push(None);
                            planned.push(Planned {
                                index,
                                lease,
                                state,
                                error,
                                usage,
                                output,
                                run_after,
                            });
                        }
                    }
                }
                for chunk in planned.chunks(INSERT_CHUNK) {
                    let mut sql = String::from(
                        "UPDATE jobs SET state = v.column3, updated_at = v.column8, \
                         finished_at = v.column4, run_after = COALESCE(v.column5, jobs.run_after), \
                         last_error = COALESCE(v.column6, jobs.last_error), usage = v.column7, \
                         lease_owner = NULL, lease_expires_at = NULL FROM (VALUES ",
                    );
                    for n in 0..chunk.len() {
                        let sep = if n == 0 { "" } else { ", " };
                        let values = placeholders(Self::NUMBERED, n * 8 + 1, 8);
                        let _ = write!(sql, "{sep}({values})");
                    }
                    sql.push_str(concat!(
                        ") AS v WHERE jobs.id = v.column1 AND jobs.fencing_token = v.column2 \
                         AND jobs.state = 'running' RETURNING ",
                        crate::common::completed_cols!()
                    ));
                    let mut q = statement(AssertSqlSafe(sql));
                    for p in chunk {
                        q = q
                            .bind(p.lease.job.id.as_str())
                            .bind(p.lease.token)
                            .bind(p.state.as_str())
                            .bind(p.state.is_terminal().then_some(now))
                            .bind(p.run_after)
                            .bind(p.error.as_deref())
                            .bind(p.usage.as_str())
                            .bind(now);
                    }
                    let mut updated = HashMap::new();
                    for row in q.fetch_all(&mut *conn).await.ctx("completing jobs")? {
                        let id: String = row.try_get("id").ctx("completing jobs")?;
                        updated.insert(id, row);
                    }
                    let mut outputs = Vec::new();
                    for p in chunk {
                        match updated.remove(&p.lease.job.id) {
                            None => results[p.index] = Some(Err(lost(p.lease))),
                            Some(row) => {
                                let job = completed_job(&p.lease.job, &row)?;
                                if let Some(output) = &p.output {
                                    outputs.push((p, output));
                                }
                                let reason = if job.state == JobState::Queued {
                                    "retry scheduled"
                                } else {
                                    "completed"
                                };
                                events.push(PendingEvent::state(&job, reason));
                                results[p.index] = Some(Ok(job));
                            }
                        }
                    }
                    if !outputs.is_empty() {
                        let mut sql = String::from(
                            "INSERT INTO job_results (job_id, output, usage, completed_at) VALUES ",
                        );
                        for n in 0..outputs.len() {
                            let sep = if n == 0 { "" } else { ", " };
                            let values = placeholders(Self::NUMBERED, n * 4 + 1, 4);
                            let _ = write!(sql, "{sep}({values})");
                        }
                        let mut q = statement(AssertSqlSafe(sql));
                        for (p, output) in &outputs {
                            q = q
                                .bind(p.lease.job.id.as_str())
                                .bind(output.as_str())
                                .bind(p.usage.as_str())
                                .bind(now);
                        }
                        q.execute(&mut *conn).await.ctx("writing job results")?;
                    }
                }
                Ok(results
                    .into_iter()
                    .zip(items)
                    .map(|(r, (lease, _))| r.unwrap_or_else(|| Err(lost(lease))))
                    .collect())
            }

            /// What an outcome does to a job: (state, error, usage, output, run_after).
            #[allow(clippy::type_complexity)]
            fn plan_outcome(
                &self,
                lease: &Lease,
                outcome: &Outcome,
                now: i64,
            ) -> Result<(JobState, Option<String>, String, Option<String>, Option<i64>)> {
                let mut run_after = None;
                let (state, error, usage, output) = match outcome {
                    Outcome::Succeeded { output, usage } => {
                        (JobState::Succeeded, None, usage, Some(json_text("output", output)?))
                    }
                    Outcome::Failed { error, retryable, usage } => {
                        let retry = *retryable && lease.job.attempt < lease.job.max_attempts;
                        let state = if retry {
                            let delay = self.config.backoff(lease.job.attempt);
                            run_after = Some(now.saturating_add(duration_ms(delay)));
                            JobState::Queued
                        } else {
                            JobState::Failed
                        };
                        (state, Some(json_text("error", error)?), usage, None)
                    }
                    Outcome::TimedOut { error, usage } => {
                        (JobState::TimedOut, Some(json_text("error", error)?), usage, None)
                    }
                    Outcome::Cancelled { usage } => (JobState::Cancelled, None, usage, None),
                };
                Ok((state, error, json_text("usage", usage)?, output, run_after))
            }
        }

        #[async_trait::async_trait]
        impl crate::JobStore for $store {
            async fn migrate(&self) -> Result<()> {
                let mut tx = self.begin().await?;
                Self::lock_migrations(&mut tx).await?;
                statement(crate::schema::CREATE_MIGRATIONS)
                    .execute(&mut *tx)
                    .await
                    .ctx("creating the migrations table")?;
                let applied: i64 = statement(
                    "SELECT COALESCE(MAX(version), 0) AS v FROM store_migrations",
                )
                .fetch_one(&mut *tx)
                .await
                .ctx("reading the schema version")?
                .try_get("v")
                .ctx("reading the schema version")?;
                let migrations = crate::schema::migrations(&Self::DIALECT);
                for (index, statements) in migrations.iter().enumerate() {
                    let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
                    if version <= applied {
                        continue;
                    }
                    for sql in statements {
                        statement(AssertSqlSafe(sql.as_str()))
                            .execute(&mut *tx)
                            .await
                            .ctx("applying a schema migration")?;
                    }
                    statement(
                        "INSERT INTO store_migrations (version, applied_at) VALUES ($1, $2)",
                    )
                    .bind(version)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .ctx("recording a schema migration")?;
                }
                tx.commit().await.ctx("committing schema migrations")
            }

            async fn submit(&self, job: NewJob) -> Result<Submitted> {
                let row = JobRow::new(&job)?;
                let mut tx = self.begin().await?;
                let now = now_ms();
                let submitted = Self::submit_in(&mut tx, &row, now).await?;
                if submitted.created {
                    let event = PendingEvent::state(&submitted.job, "submitted");
                    Self::insert_events(&mut tx, &[event], now).await?;
                }
                tx.commit().await.ctx("committing a submit")?;
                Ok(submitted)
            }

            async fn submit_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Submitted>>> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                let mut events = Vec::new();
                let results = Self::submit_many_in(&mut tx, &jobs, &[], now, &mut events).await?;
                Self::insert_events(&mut tx, &events, now).await?;
                tx.commit().await.ctx("committing a batch submit")?;
                Ok(results)
            }

            async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Option<Job>> {
                let row = statement(concat!(
                    "SELECT ",
                    crate::common::job_cols!(),
                    " FROM jobs WHERE id = $1 AND ($2 IS NULL OR tenant = $2)"
                ))
                .bind(id)
                .bind(tenant)
                .fetch_optional(self.reader())
                .await
                .ctx("reading a job")?;
                row.as_ref().map(job_from_row).transpose()
            }

            async fn list(&self, query: ListQuery) -> Result<Page> {
                let limit = if query.limit == 0 { 50 } else { query.limit.min(MAX_PAGE) };
                let cursor = query
                    .cursor
                    .as_deref()
                    .map(|c| {
                        c.parse::<i64>()
                            .map_err(|_| Error::invalid("cursor", "not a cursor of this store"))
                    })
                    .transpose()?;
                // Only constant fragments and placeholders go into the SQL text.
                let mut sql = String::from(concat!(
                    "SELECT ",
                    crate::common::job_cols!(),
                    " FROM jobs WHERE TRUE"
                ));
                let mut n = 0;
                let mut next = || {
                    n += 1;
                    n
                };
                if query.tenant.is_some() {
                    let _ = write!(sql, " AND tenant = ${}", next());
                }
                if query.state.is_some() {
                    let _ = write!(sql, " AND state = ${}", next());
                }
                if query.operation.is_some() {
                    let _ = write!(sql, " AND operation = ${}", next());
                }
                if cursor.is_some() {
                    let _ = write!(sql, " AND seq < ${}", next());
                }
                let _ = write!(sql, " ORDER BY seq DESC LIMIT ${}", next());
                let mut q = statement(AssertSqlSafe(sql));
                if let Some(tenant) = &query.tenant {
                    q = q.bind(tenant.as_str());
                }
                if let Some(state) = query.state {
                    q = q.bind(state.as_str());
                }
                if let Some(operation) = &query.operation {
                    q = q.bind(operation.as_str());
                }
                if let Some(cursor) = cursor {
                    q = q.bind(cursor);
                }
                // One extra row tells whether another page exists.
                let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                let rows = q.bind(fetch).fetch_all(self.scan_reader()).await.ctx("listing jobs")?;
                let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
                let next_cursor = if jobs.len() > limit {
                    jobs.truncate(limit);
                    jobs.last().map(|job| job.seq.to_string())
                } else {
                    None
                };
                Ok(Page { jobs, next_cursor })
            }

            async fn claim(
                &self,
                worker: &str,
                max: usize,
                lease: Duration,
                operations: Option<&[String]>,
            ) -> Result<Vec<Lease>> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                let mut events = Vec::new();
                let leases =
                    self.claim_in(&mut tx, worker, max, lease, operations, None, now, &mut events)
                        .await?;
                Self::insert_events(&mut tx, &events, now).await?;
                tx.commit().await.ctx("committing a claim")?;
                Ok(leases)
            }

            async fn write_cycle(&self, cycle: &Cycle) -> Result<CycleResult> {
                let Cycle { submits, queue_caps, events: logs, progress, completions, claim } = cycle;
                let mut tx = self.begin().await?;
                let now = now_ms();
                let mut events = Vec::new();
                let mut result = CycleResult::default();
                if !submits.is_empty() {
                    result.submitted =
                        Self::submit_many_in(&mut tx, submits, queue_caps, now, &mut events)
                            .await?;
                }
                if !logs.is_empty() {
                    result.events_written = Self::events_in(&mut tx, logs, now, &mut events).await?;
                }
                for p in progress {
                    let message = p.message.as_deref();
                    let done = Self::progress_in(
                        &mut tx, &p.lease, p.done, p.total, message, now, &mut events,
                    )
                    .await;
                    match done {
                        Err(e @ (Error::LeaseLost { .. } | Error::Invalid { .. })) => {
                            result.progress.push(Err(e))
                        }
                        // A database error aborted the transaction: the cycle fails.
                        Err(e) => return Err(e),
                        Ok(()) => result.progress.push(Ok(())),
                    }
                }
                if !completions.is_empty() {
                    let refs: Vec<(&Lease, &Outcome)> =
                        completions.iter().map(|(l, o)| (l, o)).collect();
                    result.completed = self.complete_many(&mut tx, &refs, now, &mut events).await?;
                }
                if let Some(req) = claim {
                    result.claimed = self
                        .claim_in(
                            &mut tx,
                            &req.worker,
                            req.max,
                            req.lease,
                            req.operations.as_deref(),
                            req.tenant_caps.as_deref(),
                            now,
                            &mut events,
                        )
                        .await?;
                }
                Self::insert_events(&mut tx, &events, now).await?;
                tx.commit().await.ctx("committing a write cycle")?;
                Ok(result)
            }

            async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<HeartbeatStatus> {
                let now = now_ms();
                let row = statement(
                    "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
                     WHERE id = $3 AND fencing_token = $4 AND state = 'running' \
                     RETURNING cancel_requested",
                )
                .bind(now.saturating_add(duration_ms(extend)))
                .bind(now)
                .bind(lease.job.id.as_str())
                .bind(lease.token)
                .fetch_optional(self.writer())
                .await
                .ctx("renewing a lease")?;
                Ok(match row {
                    None => HeartbeatStatus::Lost,
                    Some(row) => {
                        let cancel: bool =
                            row.try_get("cancel_requested").ctx("renewing a lease")?;
                        if cancel { HeartbeatStatus::CancelRequested } else { HeartbeatStatus::Ok }
                    }
                })
            }

            async fn complete(&self, lease: &Lease, outcome: Outcome) -> Result<Job> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                let mut events = Vec::new();
                let mut results =
                    self.complete_many(&mut tx, &[(lease, &outcome)], now, &mut events).await?;
                let job = results.pop().unwrap_or_else(|| {
                    Err(Error::LeaseLost { id: lease.job.id.clone(), token: lease.token })
                })?;
                Self::insert_events(&mut tx, &events, now).await?;
                tx.commit().await.ctx("committing a completion")?;
                Ok(job)
            }

            async fn complete_batch(
                &self,
                items: Vec<(Lease, Outcome)>,
            ) -> Result<Vec<Result<Job>>> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                let mut events = Vec::new();
                let refs: Vec<(&Lease, &Outcome)> = items.iter().map(|(l, o)| (l, o)).collect();
                let results = self.complete_many(&mut tx, &refs, now, &mut events).await?;
                Self::insert_events(&mut tx, &events, now).await?;
                tx.commit().await.ctx("committing a batch completion")?;
                Ok(results)
            }

            async fn cancel(&self, tenant: Option<&str>, id: &str) -> Result<CancelOutcome> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                // Each UPDATE re-checks the state, so a job that changes state between the
                // statements (PostgreSQL, concurrent claim) is classified on the next round.
                for _ in 0..3 {
                    let cancelled = statement(concat!(
                        "UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1 \
                         WHERE id = $2 AND ($3 IS NULL OR tenant = $3) AND state = 'queued' \
                         AND cancellable RETURNING ",
                        crate::common::job_cols!()
                    ))
                    .bind(now)
                    .bind(id)
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("cancelling a queued job")?;
                    if let Some(row) = cancelled {
                        let job = job_from_row(&row)?;
                        Self::insert_events(&mut tx, &[PendingEvent::state(&job, "cancelled")], now)
                            .await?;
                        tx.commit().await.ctx("committing a cancel")?;
                        return Ok(CancelOutcome::Cancelled);
                    }
                    let requested = statement(
                        "UPDATE jobs SET cancel_requested = TRUE, updated_at = $1 \
                         WHERE id = $2 AND ($3 IS NULL OR tenant = $3) AND state = 'running' \
                         AND cancellable RETURNING id",
                    )
                    .bind(now)
                    .bind(id)
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("requesting a cancel")?;
                    if requested.is_some() {
                        let event = PendingEvent {
                            job_id: id.to_owned(),
                            kind: "cancel_requested".into(),
                            data: "{}".to_owned(),
                        };
                        Self::insert_events(&mut tx, &[event], now).await?;
                        tx.commit().await.ctx("committing a cancel request")?;
                        return Ok(CancelOutcome::Requested);
                    }
                    let row = statement(
                        "SELECT state, cancellable FROM jobs \
                         WHERE id = $1 AND ($2 IS NULL OR tenant = $2)",
                    )
                    .bind(id)
                    .bind(tenant)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("reading a job to cancel")?;
                    let Some(row) = row else {
                        return Err(Error::NotFound { id: id.to_owned() });
                    };
                    let state: String = row.try_get("state").ctx("reading a job to cancel")?;
                    let state: JobState = state.parse().map_err(Error::corrupt)?;
                    let cancellable: bool =
                        row.try_get("cancellable").ctx("reading a job to cancel")?;
                    if state.is_terminal() {
                        return Ok(CancelOutcome::AlreadyFinished(state));
                    }
                    if !cancellable {
                        return Ok(CancelOutcome::NotCancellable);
                    }
                }
                Err(Error::Conflict { field: "state" })
            }

            async fn result(&self, tenant: Option<&str>, id: &str) -> Result<Option<JobResult>> {
                let row = statement(
                    "SELECT r.job_id, r.output, r.usage, r.completed_at FROM job_results r \
                     JOIN jobs j ON j.id = r.job_id \
                     WHERE r.job_id = $1 AND ($2 IS NULL OR j.tenant = $2)",
                )
                .bind(id)
                .bind(tenant)
                .fetch_optional(self.reader())
                .await
                .ctx("reading a job result")?;
                row.as_ref().map(result_from_row).transpose()
            }

            async fn set_progress(
                &self,
                lease: &Lease,
                done: u64,
                total: u64,
                message: Option<&str>,
            ) -> Result<()> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                let mut events = Vec::new();
                Self::progress_in(&mut tx, lease, done, total, message, now, &mut events).await?;
                Self::insert_events(&mut tx, &events, now).await?;
                tx.commit().await.ctx("committing progress")
            }

            async fn append_events(&self, events: Vec<(String, String, Value)>) -> Result<usize> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                let mut pending = Vec::new();
                let written = Self::events_in(&mut tx, &events, now, &mut pending).await?;
                if written > 0 {
                    Self::insert_events(&mut tx, &pending, now).await?;
                    tx.commit().await.ctx("committing events")?;
                }
                Ok(written)
            }

            async fn append_event(&self, job_id: &str, kind: &str, data: Value) -> Result<i64> {
                let data = check_event(kind, &data)?;
                let mut tx = self.begin().await?;
                let now = now_ms();
                // Touching the job row locks it, so events of one job get their sequence
                // numbers in commit order on PostgreSQL too (an SSE reader never skips one).
                let job = statement(
                    "UPDATE jobs SET updated_at = $1 WHERE id = $2 RETURNING seq",
                )
                .bind(now)
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("locking a job for an event")?;
                if job.is_none() {
                    return Err(Error::NotFound { id: job_id.to_owned() });
                }
                let seq: i64 = statement(
                    "INSERT INTO job_events (job_id, kind, data, at) VALUES ($1, $2, $3, $4) \
                     RETURNING seq",
                )
                .bind(job_id)
                .bind(kind)
                .bind(data.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .ctx("appending an event")?
                .try_get("seq")
                .ctx("appending an event")?;
                tx.commit().await.ctx("committing an event")?;
                Ok(seq)
            }

            async fn events_since(
                &self,
                job_id: &str,
                after_seq: i64,
                limit: usize,
            ) -> Result<Vec<Event>> {
                let limit = i64::try_from(limit.clamp(1, MAX_EVENTS)).unwrap_or(1);
                let rows = statement(
                    "SELECT seq, job_id, kind, data, at FROM job_events \
                     WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .bind(job_id)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(self.reader())
                .await
                .ctx("reading job events")?;
                rows.iter().map(event_from_row).collect()
            }

            async fn release(&self, lease: &Lease) -> Result<()> {
                let mut tx = self.begin().await?;
                let now = now_ms();
                // A job whose cancel was requested is not run again: it ends cancelled.
                let row = statement(concat!(
                    "UPDATE jobs SET \
                     state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
                     finished_at = CASE WHEN cancel_requested THEN $1 ELSE NULL END, \
                     attempt = attempt - 1, lease_owner = NULL, lease_expires_at = NULL, \
                     run_after = $1, updated_at = $1 \
                     WHERE id = $2 AND fencing_token = $3 AND state = 'running' RETURNING ",
                    crate::common::job_cols!()
                ))
                .bind(now)
                .bind(lease.job.id.as_str())
                .bind(lease.token)
                .fetch_optional(&mut *tx)
                .await
                .ctx("releasing a lease")?;
                let Some(row) = row else {
                    return Err(Error::LeaseLost {
                        id: lease.job.id.clone(),
                        token: lease.token,
                    });
                };
                let job = job_from_row(&row)?;
                Self::insert_events(&mut tx, &[PendingEvent::state(&job, "released")], now).await?;
                tx.commit().await.ctx("committing a release")
            }

            async fn counts(&self) -> Result<BTreeMap<JobState, u64>> {
                let sql = "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state";
                let rows = statement(sql)
                    .fetch_all(self.scan_reader())
                    .await
                    .ctx("counting jobs")?;
                let mut counts: BTreeMap<JobState, u64> =
                    JobState::ALL.into_iter().map(|s| (s, 0)).collect();
                for row in &rows {
                    let state: String = row.try_get("state").ctx("counting jobs")?;
                    let n: i64 = row.try_get("n").ctx("counting jobs")?;
                    let state: JobState = state.parse().map_err(Error::corrupt)?;
                    counts.insert(state, u64::try_from(n).unwrap_or(0));
                }
                Ok(counts)
            }

            async fn live_counts(&self) -> Result<LiveCounts> {
                // Each arm is answered by a partial index (`jobs_queued_tenant`,
                // `jobs_running_tenant`).
                let sql = "SELECT 'q' AS kind, tenant, COUNT(*) AS n FROM jobs \
                           WHERE state = 'queued' GROUP BY tenant \
                           UNION ALL SELECT 'r' AS kind, '' AS tenant, COUNT(*) AS n FROM jobs \
                           WHERE state = 'running'";
                let rows = statement(sql)
                    .fetch_all(self.scan_reader())
                    .await
                    .ctx("counting live jobs")?;
                let mut counts = LiveCounts::default();
                for row in &rows {
                    let kind: String = row.try_get("kind").ctx("counting live jobs")?;
                    let n: i64 = row.try_get("n").ctx("counting live jobs")?;
                    let n = u64::try_from(n).unwrap_or(0);
                    if kind == "r" {
                        counts.running = n;
                    } else {
                        let tenant: String = row.try_get("tenant").ctx("counting live jobs")?;
                        counts.queued += n;
                        counts.queued_by_tenant.insert(tenant, n);
                    }
                }
                Ok(counts)
            }

            async fn close(&self) {
                self.close_pools().await;
            }
        }
    };
}

pub(crate) use impl_job_store;
