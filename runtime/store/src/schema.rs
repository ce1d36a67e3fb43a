//! The schema, shared by both backends.
//!
//! Times are BIGINT unix milliseconds and JSON is TEXT so that every statement is the same
//! on SQLite and PostgreSQL; only the auto-increment column is spelled differently.

/// The auto-increment primary key spelling of each backend.
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn seq(&self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        }
    }
}

/// Creates the bookkeeping table that records applied migrations.
pub(crate) const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS store_migrations (\
     version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// Migrations in order; entry `i` is version `i + 1`. Never edit a released entry: append.
pub(crate) fn migrations(dialect: &Dialect) -> Vec<Vec<String>> {
    let seq = dialect.seq();
    vec![
        vec![
            format!(
                "CREATE TABLE jobs (
                seq {seq},
                id TEXT NOT NULL UNIQUE,
                tenant TEXT NOT NULL,
                operation TEXT NOT NULL,
                payload TEXT NOT NULL,
                images TEXT NOT NULL,
                priority BIGINT NOT NULL,
                max_attempts BIGINT NOT NULL,
                timeout_ms BIGINT NOT NULL,
                deadline_ms BIGINT,
                idempotency_key TEXT,
                cancellable BOOLEAN NOT NULL,
                document TEXT NOT NULL,
                state TEXT NOT NULL,
                attempt BIGINT NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                started_at BIGINT,
                finished_at BIGINT,
                run_after BIGINT NOT NULL,
                lease_owner TEXT,
                lease_expires_at BIGINT,
                fencing_token BIGINT NOT NULL DEFAULT 0,
                cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
                last_error TEXT,
                usage TEXT,
                progress_done BIGINT,
                progress_total BIGINT,
                progress_message TEXT
            )"
            ),
            // NULL keys never collide, so jobs without a key are unconstrained.
            "CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key)".into(),
            // Claim scans only queued jobs, in priority-then-age order.
            "CREATE INDEX jobs_claim ON jobs (priority DESC, seq) WHERE state = 'queued'".into(),
            "CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running'".into(),
            "CREATE INDEX jobs_deadline ON jobs (deadline_ms) \
         WHERE state = 'queued' AND deadline_ms IS NOT NULL"
                .into(),
            "CREATE INDEX jobs_tenant ON jobs (tenant, seq)".into(),
            // Deliberately no plain index on `state`: without statistics SQLite prefers an
            // equality index over the partial ones above and then sorts every queued job on
            // each claim. Listing by state walks `seq` backwards instead.
            "CREATE TABLE job_results (
            job_id TEXT PRIMARY KEY,
            output TEXT NOT NULL,
            usage TEXT NOT NULL,
            completed_at BIGINT NOT NULL
        )"
            .into(),
            format!(
                "CREATE TABLE job_events (
                seq {seq},
                job_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                data TEXT NOT NULL,
                at BIGINT NOT NULL
            )"
            ),
            "CREATE INDEX job_events_job ON job_events (job_id, seq)".into(),
        ],
        // 2: multi-tenant claims take each tenant's best queued jobs by index.
        vec![
            "CREATE INDEX jobs_queued_tenant ON jobs (tenant, priority DESC, seq) \
         WHERE state = 'queued'"
                .into(),
        ],
        // 3: multi-tenant claims count each tenant's running jobs on every cycle; without
        // this index that count walked every job ever stored.
        vec!["CREATE INDEX jobs_running_tenant ON jobs (tenant) WHERE state = 'running'".into()],
    ]
}
