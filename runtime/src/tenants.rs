//! Tenants: who may call the API, what each may run and read, and under which quotas.
//!
//! Without a tenants file the worker serves one implicit tenant (`default`) and asks for no
//! credentials; it then listens on 127.0.0.1 only. With one (`--tenants FILE`, TOML), every
//! API request must carry `Authorization: Bearer TOKEN` of a listed tenant, and a tenant
//! sees only its own jobs, handlers and images.
//!
//! ```toml
//! [[tenants]]
//! id = "acme"
//! # sha256 of each API token (hex, optionally prefixed "sha256:"); make one with
//! # `guestkit-worker tenant hash-token` (reads the token on stdin). Tokens are never stored.
//! token_hashes = ["sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"]
//! # Handler names or operations this tenant may run ("*": every shared handler). Handlers
//! # in the tenant's private directory (HANDLERS_DIR/acme/) are always allowed.
//! handlers = ["guestkit.echo", "inspect"]
//! # Directories whose image files this tenant's jobs may be granted.
//! image_roots = ["/srv/images/acme"]
//!
//! [tenants.quotas]
//! max_concurrent = 4        # jobs running at once, across all workers
//! max_queued = 1000         # jobs waiting; more submissions get 429
//! fuel = 20_000_000_000     # per job
//! memory_mib = 512          # per job
//! timeout_seconds = 600     # longest timeout a job may ask for
//! max_image_gib = 64        # largest image (virtual size) a job may be granted
//! max_submitting = 8        # submissions of this tenant admitted at once (default 8); more wait
//! backlog = 256             # queued jobs beyond which its submissions are admitted one at a time
//! ```

use crate::grants::ImagePolicy;
use anyhow::{Context, Result, bail};
use guestkit_store::TenantCap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Id of the implicit tenant of a single-tenant worker.
pub const DEFAULT_TENANT: &str = "default";
/// Longest tenant id.
const MAX_ID: usize = 64;
/// Submissions of one tenant admitted at once when its quotas do not say.
pub const DEFAULT_MAX_SUBMITTING: u32 = 8;
/// Queued jobs beyond which a tenant is admitted one submission at a time, when its quotas
/// do not say.
pub const DEFAULT_BACKLOG: u64 = 256;
/// How long after its last submission a tenant still counts as having work, for the share
/// of slots (see [`Tenants::claim_caps`]).
pub const ACTIVE_WINDOW_MS: i64 = 1_000;

/// Per-tenant limits; `None` leaves the worker-wide setting in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Jobs of the tenant running at once, across every worker on the store.
    pub max_concurrent: Option<u32>,
    /// Jobs of the tenant queued at once; more submissions get 429.
    pub max_queued: Option<u64>,
    /// Fuel per job.
    pub fuel: Option<u64>,
    /// Linear memory per job, bytes.
    pub memory_bytes: Option<u64>,
    /// Longest timeout a job may ask for.
    pub timeout: Option<Duration>,
    /// Largest virtual size of an image a job may be granted, bytes.
    pub max_image_bytes: Option<u64>,
    /// Submissions of the tenant admitted at once (parsed, checked, stored); more wait
    /// their turn without using the worker's CPU. `None`: no limit (single-tenant).
    pub max_submitting: Option<u32>,
    /// Queued jobs of the tenant beyond which its submissions are admitted one at a time.
    /// A deeper queue would not finish its jobs any sooner, while a write cycle carrying
    /// many of its submissions is one every other tenant's submission and completion waits
    /// for. `None`: no such limit (single-tenant).
    pub backlog: Option<u64>,
}

/// One tenant.
#[derive(Debug)]
pub struct Tenant {
    /// Tenant id (also the name of its private handlers directory).
    pub id: String,
    /// Handler names or operations it may run; `None` = every shared handler.
    handlers: Option<Vec<String>>,
    /// Where its images may live.
    pub images: ImagePolicy,
    /// Its limits.
    pub quotas: Quotas,
    /// Permits for `quotas.max_submitting`.
    submit_gate: Option<Arc<tokio::sync::Semaphore>>,
    /// The one permit a submission also needs while the tenant is over `quotas.backlog`.
    backlog_gate: Arc<tokio::sync::Semaphore>,
    /// The tenant's queued jobs as last known: counted by the store every second, counted
    /// up by submissions here and down by claims here in between (so approximate when
    /// several workers share the store; it only paces admission).
    queued: AtomicI64,
    /// Until when (unix ms) submissions are refused without a store round trip because the
    /// store just found this tenant's queue full (see [`Tenant::queue_full_for`]).
    queue_full_until: AtomicI64,
    /// When (unix ms) it last submitted a job here (see [`Tenants::claim_caps`]).
    last_submit: AtomicI64,
}

impl Tenant {
    /// How long, after the store refused a submission because this tenant's queue was
    /// full, further submissions are refused straight away: a tenant hammering the API at
    /// its queue quota then costs a header check per request, not a write cycle. The store's
    /// check stays the exact one; this only answers "retry later" a little early.
    pub const QUEUE_FULL_HOLD_MS: i64 = 100;

    /// Notes that the store found this tenant's queue full at `now_ms`.
    pub fn queue_was_full(&self, now_ms: i64) {
        self.queue_full_until.store(
            now_ms.saturating_add(Self::QUEUE_FULL_HOLD_MS),
            Ordering::Relaxed,
        );
    }

    /// Whether the store found this tenant's queue full in the last moments.
    pub fn queue_full_for(&self, now_ms: i64) -> bool {
        now_ms < self.queue_full_until.load(Ordering::Relaxed)
    }

    /// Waits for this tenant's turn to submit (see [`Quotas::max_submitting`] and
    /// [`Quotas::backlog`]); the submission holds the turn until it is stored. A tenant
    /// that floods the API thus queues behind itself: its waiting requests are parked, not
    /// competing with other tenants' requests for the CPU or for room in the store's write
    /// cycle.
    pub async fn submit_turn(&self) -> SubmitTurn {
        let Some(gate) = self.submit_gate.clone() else {
            return SubmitTurn::default();
        };
        let backlogged = self
            .quotas
            .backlog
            .is_some_and(|b| self.queued() >= i64::try_from(b).unwrap_or(i64::MAX));
        let single = if backlogged {
            self.backlog_gate.clone().acquire_owned().await.ok()
        } else {
            None
        };
        SubmitTurn {
            single,
            turn: gate.acquire_owned().await.ok(),
        }
    }

    /// The tenant's queued jobs as last known (see [`Tenant::set_queued`]).
    pub fn queued(&self) -> i64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Sets the tenant's queued jobs from a count by the store.
    pub fn set_queued(&self, n: i64) {
        self.queued.store(n.max(0), Ordering::Relaxed);
    }

    /// Notes `n` of the tenant's jobs queued (positive) or claimed (negative) here.
    pub fn add_queued(&self, n: i64) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_add(n).max(0))
            });
    }

    /// Notes a submission by this tenant at `now_ms`.
    pub fn note_submit(&self, now_ms: i64) {
        self.last_submit.store(now_ms, Ordering::Relaxed);
    }

    /// Whether the tenant has work here: jobs queued or running (`running_here` of them on
    /// this worker), or a submission within the last [`ACTIVE_WINDOW_MS`].
    fn is_active(&self, running_here: u32, now_ms: i64) -> bool {
        running_here > 0
            || self.queued() > 0
            || now_ms.saturating_sub(self.last_submit.load(Ordering::Relaxed)) < ACTIVE_WINDOW_MS
    }

    /// Whether this tenant may run the shared handler `name` serving `operation`.
    pub fn may_run(&self, name: &str, operation: &str) -> bool {
        match &self.handlers {
            None => true,
            Some(list) => list.iter().any(|h| h == name || h == operation),
        }
    }
}

/// A tenant's turn to submit: held until the submission is stored (or refused).
#[derive(Debug, Default)]
pub struct SubmitTurn {
    /// The tenant's one permit while it is over its backlog.
    single: Option<tokio::sync::OwnedSemaphorePermit>,
    /// One of its `max_submitting` permits.
    turn: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl SubmitTurn {
    /// Whether the turn was gated at all (single-tenant workers do not gate).
    pub fn is_gated(&self) -> bool {
        self.turn.is_some()
    }

    /// Whether the tenant was over its backlog, so this was its only turn.
    pub fn is_single(&self) -> bool {
        self.single.is_some()
    }
}

/// The tenants of a worker.
#[derive(Debug)]
pub struct Tenants {
    by_id: HashMap<String, Arc<Tenant>>,
    /// Every (token hash, tenant) pair, scanned in full on each check.
    tokens: Vec<([u8; 32], Arc<Tenant>)>,
    multi: bool,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// Not a `Bearer` credential.
    Malformed,
    /// No tenant has this token.
    Unknown,
}

impl AuthError {
    /// A short reason for logs and error bodies.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing Authorization header",
            AuthError::Malformed => "Authorization is not a Bearer token",
            AuthError::Unknown => "unknown token",
        }
    }
}

impl Tenants {
    /// One implicit tenant, no credentials: `images` is the worker's image policy.
    pub fn single(images: ImagePolicy) -> Tenants {
        let tenant = Arc::new(Tenant {
            id: DEFAULT_TENANT.into(),
            handlers: None,
            images,
            quotas: Quotas::default(),
            submit_gate: None,
            backlog_gate: Arc::new(tokio::sync::Semaphore::new(1)),
            queued: Default::default(),
            queue_full_until: Default::default(),
            last_submit: Default::default(),
        });
        Tenants {
            by_id: HashMap::from([(DEFAULT_TENANT.to_string(), tenant)]),
            tokens: Vec::new(),
            multi: false,
        }
    }

    /// Reads a tenants file; `nbd_allow` is the worker's NBD allow-list (shared by all).
    pub fn load(path: &Path, nbd_allow: &[String]) -> Result<Tenants> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the tenants file {}", path.display()))?;
        Self::parse(&text, nbd_allow).with_context(|| format!("in {}", path.display()))
    }

    /// Parses the TOML text of a tenants file.
    pub fn parse(text: &str, nbd_allow: &[String]) -> Result<Tenants> {
        let file: File = toml::from_str(text)?;
        if file.tenants.is_empty() {
            bail!("no [[tenants]] entries");
        }
        let mut by_id = HashMap::new();
        let mut tokens: Vec<([u8; 32], Arc<Tenant>)> = Vec::new();
        for (i, t) in file.tenants.into_iter().enumerate() {
            let at = format!("tenants[{i}]");
            if !valid_id(&t.id) {
                bail!(
                    "{at}.id: {:?} must be 1-{MAX_ID} of a-z, 0-9, '-' and '_', starting with a letter or digit",
                    t.id
                );
            }
            if by_id.contains_key(&t.id) {
                bail!("{at}.id: {:?} is listed twice", t.id);
            }
            if t.token_hashes.is_empty() {
                bail!("{at}.token_hashes: a tenant needs at least one token");
            }
            let mut hashes = Vec::new();
            for (j, h) in t.token_hashes.iter().enumerate() {
                let hash = parse_hash(h)
                    .with_context(|| format!("{at}.token_hashes[{j}]: expected 64 hex digits"))?;
                if tokens.iter().any(|(other, _)| *other == hash) || hashes.contains(&hash) {
                    bail!("{at}.token_hashes[{j}]: the same token is listed twice");
                }
                hashes.push(hash);
            }
            let roots: Vec<PathBuf> = t.image_roots.iter().map(PathBuf::from).collect();
            for (j, root) in roots.iter().enumerate() {
                if !root.is_absolute() {
                    bail!(
                        "{at}.image_roots[{j}]: {} is not an absolute path",
                        root.display()
                    );
                }
            }
            let mut images =
                ImagePolicy::new(&roots).with_context(|| format!("{at}.image_roots"))?;
            images.nbd_allow = nbd_allow.to_vec();
            let q = t.quotas;
            let positive = |name: &str, v: Option<u64>| -> Result<Option<u64>> {
                match v {
                    Some(0) => bail!("{at}.quotas.{name}: must be at least 1"),
                    other => Ok(other),
                }
            };
            let quotas = Quotas {
                max_concurrent: positive("max_concurrent", q.max_concurrent)?
                    .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
                max_queued: positive("max_queued", q.max_queued)?,
                fuel: positive("fuel", q.fuel)?,
                memory_bytes: positive("memory_mib", q.memory_mib)?
                    .map(|m| m.saturating_mul(1024 * 1024)),
                timeout: positive("timeout_seconds", q.timeout_seconds)?.map(Duration::from_secs),
                max_image_bytes: positive("max_image_gib", q.max_image_gib)?
                    .map(|g| g.saturating_mul(1024 * 1024 * 1024)),
                max_submitting: Some(
                    positive("max_submitting", q.max_submitting)?
                        .map(|v| u32::try_from(v).unwrap_or(u32::MAX).min(1 << 20))
                        .unwrap_or(DEFAULT_MAX_SUBMITTING),
                ),
                backlog: Some(positive("backlog", q.backlog)?.unwrap_or(DEFAULT_BACKLOG)),
            };
            let handlers = if t.handlers.iter().any(|h| h == "*") {
                None
            } else {
                Some(t.handlers)
            };
            let submit_gate = quotas
                .max_submitting
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize)));
            let tenant = Arc::new(Tenant {
                id: t.id.clone(),
                handlers,
                images,
                quotas,
                submit_gate,
                backlog_gate: Arc::new(tokio::sync::Semaphore::new(1)),
                queued: Default::default(),
                queue_full_until: Default::default(),
                last_submit: Default::default(),
            });
            for hash in hashes {
                tokens.push((hash, tenant.clone()));
            }
            by_id.insert(t.id, tenant);
        }
        Ok(Tenants {
            by_id,
            tokens,
            multi: true,
        })
    }

    /// Whether requests must authenticate (a tenants file is in use).
    pub fn is_multi(&self) -> bool {
        self.multi
    }

    /// The tenant `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.by_id.get(id)
    }

    /// Every tenant, sorted by id.
    pub fn all(&self) -> Vec<&Arc<Tenant>> {
        let mut all: Vec<&Arc<Tenant>> = self.by_id.values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// What a claim on a worker with `slots` job slots may take of each tenant's jobs,
    /// sorted by tenant: at most its `max_concurrent` quota running at once, and, while two
    /// or more tenants have work here (see [`Tenant::is_active`]), at most an equal share
    /// of the slots (rounded up) running on this worker (`running_here` counts them).
    ///
    /// The share is what keeps a tenant that floods the queue from holding every slot: a
    /// quiet tenant's job then finds a slot free when it arrives, instead of waiting for one
    /// of the flood's jobs to end, and the flood's jobs compete less for the worker's CPU.
    /// A tenant alone has every slot.
    pub fn claim_caps(
        &self,
        slots: usize,
        running_here: &HashMap<String, u32>,
        now_ms: i64,
    ) -> Vec<TenantCap> {
        let here = |t: &Tenant| running_here.get(&t.id).copied().unwrap_or(0);
        let active = self
            .by_id
            .values()
            .filter(|t| t.is_active(here(t), now_ms))
            .count();
        let share = (active >= 2).then(|| {
            u32::try_from(slots.div_ceil(active))
                .unwrap_or(u32::MAX)
                .max(1)
        });
        let mut caps: Vec<TenantCap> = self
            .by_id
            .values()
            .map(|t| TenantCap {
                tenant: t.id.clone(),
                max_running: t.quotas.max_concurrent.unwrap_or(u32::MAX),
                max_claim: share.map_or(u32::MAX, |s| s.saturating_sub(here(t))),
            })
            .collect();
        caps.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        caps
    }

    /// Tenant ids with a queue quota, and the quota.
    pub fn queue_caps(&self) -> Vec<(String, u64)> {
        self.by_id
            .values()
            .filter_map(|t| t.quotas.max_queued.map(|c| (t.id.clone(), c)))
            .collect()
    }

    /// The tenant an `Authorization` header value belongs to. Single-tenant workers accept
    /// anything (and ignore the header). Every known token is compared, in constant time,
    /// so the time taken says nothing about which tenant or how much of a token matched.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Arc<Tenant>, AuthError> {
        if !self.multi {
            return self
                .by_id
                .get(DEFAULT_TENANT)
                .cloned()
                .ok_or(AuthError::Unknown);
        }
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Malformed)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&Arc<Tenant>> = None;
        for (hash, tenant) in &self.tokens {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(tenant);
            }
        }
        found.cloned().ok_or(AuthError::Unknown)
    }
}

/// `sha256:HEX` of a token, as written into a tenants file.
pub fn hash_token(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
    let bytes = hex::decode(hex_part).ok()?;
    bytes.try_into().ok()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tenants: Vec<TenantEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    id: String,
    #[serde(default)]
    token_hashes: Vec<String>,
    #[serde(default)]
    handlers: Vec<String>,
    #[serde(default)]
    image_roots: Vec<String>,
    #[serde(default)]
    quotas: QuotaEntry,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QuotaEntry {
    max_concurrent: Option<u64>,
    max_queued: Option<u64>,
    fuel: Option<u64>,
    memory_mib: Option<u64>,
    timeout_seconds: Option<u64>,
    max_image_gib: Option<u64>,
    max_submitting: Option<u64>,
    backlog: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(extra: &str) -> String {
        format!(
            r#"
[[tenants]]
id = "acme"
token_hashes = ["{}"]
handlers = ["guestkit.echo"]
{extra}

[[tenants]]
id = "globex"
token_hashes = ["{}", "{}"]
handlers = ["*"]
[tenants.quotas]
max_concurrent = 2
max_queued = 10
memory_mib = 64
max_submitting = 2
backlog = 3
"#,
            hash_token("acme-token"),
            hash_token("globex-1"),
            hash_token("globex-2").trim_start_matches("sha256:"),
        )
    }

    #[test]
    fn authenticates_by_token_only() {
        let tenants = Tenants::parse(&file(""), &[]).expect("parse");
        assert!(tenants.is_multi());
        let who = |h: Option<&str>| tenants.authenticate(h).map(|t| t.id.clone());
        assert_eq!(who(Some("Bearer acme-token")), Ok("acme".into()));
        assert_eq!(who(Some("Bearer globex-1")), Ok("globex".into()));
        assert_eq!(who(Some("Bearer globex-2")), Ok("globex".into()));
        assert_eq!(who(Some("Bearer acme-token2")), Err(AuthError::Unknown));
        assert_eq!(who(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(who(Some("Basic YWNtZQ==")), Err(AuthError::Malformed));
        assert_eq!(who(None), Err(AuthError::Missing));
        let globex = tenants.get("globex").expect("globex");
        assert_eq!(globex.quotas.max_concurrent, Some(2));
        assert_eq!(globex.quotas.memory_bytes, Some(64 << 20));
        assert!(globex.may_run("anything", "any"));
        let acme = tenants.get("acme").expect("acme");
        assert!(acme.may_run("guestkit.echo", "echo"));
        assert!(!acme.may_run("guestkit.inspect", "inspect"));
        // Nobody has work: the quotas alone.
        let none = HashMap::new();
        assert_eq!(
            tenants.claim_caps(4, &none, 10_000),
            vec![
                TenantCap::running("acme", u32::MAX),
                TenantCap::running("globex", 2)
            ]
        );
    }

    #[test]
    fn busy_tenants_share_the_slots() {
        let tenants = Tenants::parse(&file(""), &[]).expect("parse");
        let now = 1_000_000;
        let globex = tenants.get("globex").expect("globex");
        let claim = |running: &[(&'static str, u32)], now| {
            let here: HashMap<String, u32> =
                running.iter().map(|(t, n)| (t.to_string(), *n)).collect();
            tenants
                .claim_caps(5, &here, now)
                .into_iter()
                .map(|c| (c.tenant, c.max_claim))
                .collect::<Vec<_>>()
        };
        // acme alone (running 4 of 5 slots): no share.
        assert_eq!(
            claim(&[("acme", 4)], now),
            [("acme".into(), u32::MAX), ("globex".into(), u32::MAX)]
        );
        // globex submits: each may run 3 (5 slots / 2, rounded up) here.
        globex.note_submit(now);
        assert_eq!(
            claim(&[("acme", 4)], now),
            [("acme".into(), 0), ("globex".into(), 3)]
        );
        assert_eq!(
            claim(&[("acme", 1), ("globex", 1)], now + 999),
            [("acme".into(), 2), ("globex".into(), 2)]
        );
        // A second later globex has nothing queued or running: acme is alone again.
        assert_eq!(
            claim(&[("acme", 4)], now + 1_000)[0],
            ("acme".into(), u32::MAX)
        );
        // Queued jobs count as work too.
        globex.set_queued(1);
        assert_eq!(claim(&[("acme", 4)], now + 5_000)[0], ("acme".into(), 0));
    }

    #[tokio::test]
    async fn submissions_take_turns_per_tenant() {
        let tenants = Tenants::parse(&file(""), &[]).expect("parse");
        let acme = tenants.get("acme").expect("acme");
        let globex = tenants.get("globex").expect("globex");
        assert_eq!(acme.quotas.max_submitting, Some(DEFAULT_MAX_SUBMITTING));
        assert_eq!(globex.quotas.max_submitting, Some(2));
        let first = globex.submit_turn().await;
        let _second = globex.submit_turn().await;
        assert!(first.is_gated() && !first.is_single());
        // A third globex submission waits; acme's own turns are unaffected.
        let waiting = tokio::time::timeout(Duration::from_millis(50), globex.submit_turn());
        assert!(waiting.await.is_err(), "a third turn was given");
        let _acme = acme.submit_turn().await;
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), globex.submit_turn());
        assert!(third.await.expect("turn after a release").is_gated());
        // Single-tenant workers do not gate submissions.
        let single = Tenants::single(ImagePolicy::default());
        let only = single.get(DEFAULT_TENANT).expect("default");
        assert!(!only.submit_turn().await.is_gated());
    }

    #[tokio::test]
    async fn a_tenant_over_its_backlog_submits_one_at_a_time() {
        let tenants = Tenants::parse(&file(""), &[]).expect("parse");
        let acme = tenants.get("acme").expect("acme");
        let globex = tenants.get("globex").expect("globex");
        assert_eq!(acme.quotas.backlog, Some(DEFAULT_BACKLOG));
        assert_eq!(globex.quotas.backlog, Some(3));
        // Below the backlog: max_submitting (2) turns at once.
        globex.add_queued(2);
        let a = globex.submit_turn().await;
        let b = tokio::time::timeout(Duration::from_secs(5), globex.submit_turn())
            .await
            .expect("a second turn below the backlog");
        assert!(!a.is_single() && !b.is_single());
        drop((a, b));
        // At the backlog: one at a time.
        globex.add_queued(1);
        assert_eq!(globex.queued(), 3);
        let only = globex.submit_turn().await;
        assert!(only.is_single());
        let waiting = tokio::time::timeout(Duration::from_millis(50), globex.submit_turn());
        assert!(waiting.await.is_err(), "a second turn over the backlog");
        drop(only);
        let next = tokio::time::timeout(Duration::from_secs(5), globex.submit_turn());
        assert!(next.await.expect("the next turn").is_single());
        // The store's count replaces the estimate; claims count it down, never below 0.
        globex.set_queued(1);
        globex.add_queued(-5);
        assert_eq!(globex.queued(), 0);
        assert!(!globex.submit_turn().await.is_single());
    }

    #[test]
    fn a_full_queue_is_remembered_briefly() {
        let tenants = Tenants::parse(&file(""), &[]).expect("parse");
        let globex = tenants.get("globex").expect("globex");
        assert!(!globex.queue_full_for(1_000));
        globex.queue_was_full(1_000);
        assert!(globex.queue_full_for(1_000));
        assert!(globex.queue_full_for(1_000 + Tenant::QUEUE_FULL_HOLD_MS - 1));
        assert!(!globex.queue_full_for(1_000 + Tenant::QUEUE_FULL_HOLD_MS));
        // Per tenant.
        assert!(!tenants.get("acme").expect("acme").queue_full_for(1_000));
    }

    #[test]
    fn single_tenant_needs_no_token() {
        let tenants = Tenants::single(ImagePolicy::default());
        assert!(!tenants.is_multi());
        assert_eq!(
            tenants.authenticate(None).map(|t| t.id.clone()),
            Ok(DEFAULT_TENANT.into())
        );
    }

    #[test]
    fn refuses_bad_files() {
        let bad = [
            ("", "no [[tenants]]"),
            (
                "[[tenants]]\nid = \"Bad Id\"\ntoken_hashes = []",
                "tenants[0].id",
            ),
            ("[[tenants]]\nid = \"a\"", "tenants[0].token_hashes"),
            (
                "[[tenants]]\nid = \"a\"\ntoken_hashes = [\"abc\"]",
                "64 hex digits",
            ),
            (
                "[[tenants]]\nid = \"a\"\ntoken_hashes = []\nextra = 1",
                "unknown field",
            ),
            (
                "[[tenants]]\nid = \"a\"\ntoken_hashes = [\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"]\nimage_roots = [\"relative\"]",
                "not an absolute path",
            ),
            (
                "[[tenants]]\nid = \"a\"\ntoken_hashes = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n[tenants.quotas]\nfuel = 0",
                "quotas.fuel",
            ),
            (
                "[[tenants]]\nid = \"a\"\ntoken_hashes = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n[tenants.quotas]\nmax_submitting = 0",
                "quotas.max_submitting",
            ),
            (
                "[[tenants]]\nid = \"a\"\ntoken_hashes = [\"0000000000000000000000000000000000000000000000000000000000000000\"]\n[tenants.quotas]\nbacklog = 0",
                "quotas.backlog",
            ),
        ];
        for (text, want) in bad {
            let err = format!("{:#}", Tenants::parse(text, &[]).expect_err(text));
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let twice = format!(
            "{}\n[[tenants]]\nid = \"acme\"\ntoken_hashes = [\"{}\"]",
            file(""),
            hash_token("other")
        );
        assert!(format!("{:#}", Tenants::parse(&twice, &[]).expect_err("dup")).contains("twice"));
    }
}
