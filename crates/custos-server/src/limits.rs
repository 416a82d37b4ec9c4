//! Rate limits: who may send how many requests, and which address a request comes from.
//!
//! This module owns
//! - the **client address** rule ([`client_ip`]): the TCP peer, unless the peer is one of
//!   `limits.trusted_proxies`, in which case the rightmost `X-Forwarded-For` entry that is not
//!   itself a trusted proxy. [`crate::context`] applies it once per request, so audit records,
//!   the failed-authentication throttle and these budgets all see the same address;
//! - four **budgets** ([`Budget`]), each a GCRA ("generic cell rate algorithm") limiter with a
//!   steady rate and a burst from `[limits]`: `sign_in` (the sign-in form, keyed by client
//!   address, checked before any credential work), `ingest` (predictions, labels, reference
//!   uploads), `read` (every other authenticated request) and `reveal` (turning vault tokens back
//!   into originals, a few a minute), the last three keyed by principal *and* by client
//!   address — a request must fit both;
//! - the decision which budget a request spends ([`admit_anonymous`], [`admit`]); both are called
//!   from the one choke point, [`crate::auth::authorize`], and answer 429 with `Retry-After`;
//! - counters of refusals, published through [`RateLimiter::snapshot`] for the metrics endpoint
//!   to export (there is no `/metrics` route yet; the Prometheus work reads this snapshot).
//!
//! Why a small hand-written GCRA rather than `governor`: the keyed store has to be hard-capped
//! (governor's keyed `DashMap` store grows until `retain_recent()` runs and has no cap), the
//! answer needs the exact wait for `Retry-After`, the tests need to drive time by hand, and the
//! audit throttle wants one more timestamp beside each key's state. Per key the whole state is
//! one number, the theoretical arrival time (TAT), so the algorithm is a dozen lines and adds no
//! dependency. A key whose TAT has passed is indistinguishable from a key never seen, which is
//! what makes pruning free of side effects.

use crate::auth::{Actor, audit_event};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use custos_core::{Action, Outcome, Principal};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// At most one `ratelimit.reject` audit record per key in this window: a flood must not become
/// a flood of the audit log.
const AUDIT_INTERVAL_NANOS: u64 = 60 * NANOS_PER_SECOND;

/// The routes that spend the sign-in budget (keyed by address, before any credential is read).
const SIGN_IN_ROUTES: &[(&str, &str)] = &[
    ("POST", "/ui/login"),
    ("POST", "/oauth/token"),
    ("GET", "/ui/oidc/start"),
    ("GET", "/ui/oidc/callback"),
];

// ---------------------------------------------------------------------------------------------
// Client address
// ---------------------------------------------------------------------------------------------

/// An address block such as `10.0.0.0/8` or `::1/128` (a bare address means one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the block. IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_bits(u128::from(u32::from(ip)), self.prefix, 32) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_bits(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// Keeps the top `prefix` of `width` bits.
fn mask_bits(value: u128, prefix: u8, width: u32) -> u128 {
    let host_bits = width.saturating_sub(u32::from(prefix));
    if host_bits >= 128 {
        0
    } else {
        (value >> host_bits) << host_bits
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
        let width: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {width}"))?,
        };
        let bits = match network {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        // A block with host bits set ("10.0.0.1/8") is most likely a typo for something else;
        // refusing it beats guessing which of the two the operator meant.
        if mask_bits(bits, prefix, u32::from(width)) != bits {
            return Err(format!(
                "`{text}` has bits set beyond its /{prefix} prefix; write the network address"
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Cidr> for String {
    fn from(cidr: Cidr) -> Self {
        cidr.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy.
///
/// Behind trusted proxies, `X-Forwarded-For` is read right to left: each proxy appends the
/// address it received the request from, so the entries on the right were written by proxies
/// we trust and the first one that is not a trusted proxy is the client. Everything to its left
/// was supplied by the client and is ignored — that is where a spoofed address would sit. An
/// entry that is not an address ends the walk at the last hop we could trust, so garbage can
/// never make us read further left. If every entry is a trusted proxy, the leftmost is the
/// client (a request from inside the proxy network).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !trusted(peer, proxies) {
        return Some(peer);
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut nearest = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_entry(entry) else {
            return Some(nearest);
        };
        if !trusted(ip, proxies) {
            return Some(ip);
        }
        nearest = ip;
    }
    Some(nearest)
}

/// The key a client address is limited under. IPv6 addresses are grouped by their /64: one
/// subscriber usually holds a whole /64, and keying on single addresses would let it rotate
/// through 2^64 keys (and through the key table).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask_bits(u128::from(v6), 64, 128))),
        v4 => v4,
    }
}

// ---------------------------------------------------------------------------------------------
// GCRA
// ---------------------------------------------------------------------------------------------

/// A rate and a burst, in GCRA terms: one request costs `interval` nanoseconds of credit and up
/// to `burst` requests may be sent at once from a rested key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval: u64,
    burst: u64,
}

impl Quota {
    /// `per` requests every `period_seconds`, bursts of `burst`. Zero values are raised to 1
    /// (configuration validation refuses them before this is reached).
    pub fn new(per: u32, period_seconds: u64, burst: u32) -> Self {
        let per = u64::from(per.max(1));
        Self {
            interval: (period_seconds.max(1).saturating_mul(NANOS_PER_SECOND) / per).max(1),
            burst: u64::from(burst.max(1)),
        }
    }

    /// The same rate and burst multiplied by `factor` (the per-address share of a budget).
    fn times(self, factor: u32) -> Self {
        let factor = u64::from(factor.max(1));
        Self {
            interval: (self.interval / factor).max(1),
            burst: self.burst.saturating_mul(factor),
        }
    }

    fn tolerance(self) -> u64 {
        self.interval.saturating_mul(self.burst)
    }

    /// The GCRA test: `Ok(new TAT)` if a request at `now` fits, else `Err(nanoseconds)` until it
    /// would. A refused request does not spend anything.
    fn decide(self, tat: Option<u64>, now: u64) -> Result<u64, u64> {
        let tat = tat.map_or(now, |t| t.max(now));
        let next = tat.saturating_add(self.interval);
        let allowed_until = now.saturating_add(self.tolerance());
        if next <= allowed_until {
            Ok(next)
        } else {
            Err(next - allowed_until)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    tat: u64,
    audited: Option<u64>,
}

impl Entry {
    /// A rested key whose last refusal record is over a minute old carries no information a new
    /// key would not: dropping it changes no answer and no audit decision.
    fn spent(&self, now: u64) -> bool {
        self.tat <= now
            && self
                .audited
                .is_none_or(|a| now.saturating_sub(a) >= AUDIT_INTERVAL_NANOS)
    }
}

/// One bounded key table.
#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Entry>,
    cap: usize,
}

impl<K: Eq + Hash> Table<K> {
    fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            cap: cap.max(1),
        }
    }

    fn tat<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<u64>
    where
        K: Borrow<Q>,
    {
        self.entries.get(key).map(|e| e.tat)
    }

    /// Records an admitted request. Makes room first if the key is new and the table is full.
    fn admit(&mut self, key: K, tat: u64, now: u64) -> u64 {
        let mut evicted = 0;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.cap {
            evicted = self.make_room(now);
        }
        self.entries
            .entry(key)
            .and_modify(|e| e.tat = tat)
            .or_insert(Entry { tat, audited: None });
        evicted
    }

    /// Whether a refusal for `key` should be audited now (and, if so, notes that it was).
    fn audit_due<Q: Eq + Hash + ?Sized>(&mut self, key: &Q, now: u64) -> bool
    where
        K: Borrow<Q>,
    {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let due = entry
            .audited
            .is_none_or(|a| now.saturating_sub(a) >= AUDIT_INTERVAL_NANOS);
        if due {
            entry.audited = Some(now);
        }
        due
    }

    /// Drops spent keys; if the table is still full, evicts the stalest eighth (smallest TAT:
    /// the keys closest to rested, whose loss forgives the least). Returns how many keys were
    /// evicted that still held state. Amortized O(1) per insert: after a pass there is room
    /// for at least cap/8 new keys.
    fn make_room(&mut self, now: u64) -> u64 {
        self.entries.retain(|_, e| !e.spent(now));
        if self.entries.len() < self.cap {
            return 0;
        }
        let keep = self.cap.saturating_sub((self.cap / 8).max(1));
        let evict = self.entries.len().saturating_sub(keep);
        let mut tats: Vec<u64> = self.entries.values().map(|e| e.tat).collect();
        tats.sort_unstable();
        let Some(threshold) = evict.checked_sub(1).and_then(|i| tats.get(i)).copied() else {
            return 0;
        };
        let before = self.entries.len();
        self.entries.retain(|_, e| e.tat > threshold);
        u64::try_from(before.saturating_sub(self.entries.len())).unwrap_or(u64::MAX)
    }
}

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The sign-in form, per client address.
    SignIn,
    /// Predictions, labels and reference uploads, per principal and per address.
    Ingest,
    /// Every other authenticated request, per principal and per address.
    Read,
    /// Reveals of tokenized originals (`pii:reveal`), per principal and per address: a small
    /// budget of its own, so that reading originals in bulk is impossible even for a holder.
    Reveal,
}

impl Budget {
    /// The name used in configuration, audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::SignIn => "sign_in",
            Budget::Ingest => "ingest",
            Budget::Read => "read",
            Budget::Reveal => "reveal",
        }
    }

    /// The budget an authorized action spends.
    pub fn of(action: Action) -> Self {
        match action {
            Action::PredictionsWrite | Action::LabelsWrite | Action::ReferencesWrite => {
                Budget::Ingest
            }
            Action::PiiReveal => Budget::Reveal,
            _ => Budget::Read,
        }
    }
}

/// A refusal: how long to wait, and whether to audit it (and for which key kinds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Whole seconds until the request would fit, at least 1 (the `Retry-After` value).
    pub retry_after_seconds: u64,
    /// The principal's budget was spent and its refusal is due an audit record.
    pub audit_principal: bool,
    /// The address's budget was spent and its refusal is due an audit record.
    pub audit_ip: bool,
    /// The principal's budget was spent.
    pub by_principal: bool,
    /// The address's budget was spent.
    pub by_ip: bool,
}

#[derive(Debug, Default)]
struct Counters {
    rejected: AtomicU64,
    rejected_by_principal: AtomicU64,
    rejected_by_ip: AtomicU64,
    audited: AtomicU64,
    evicted: AtomicU64,
}

#[derive(Debug)]
struct Tables {
    principals: Table<String>,
    ips: Table<IpAddr>,
}

#[derive(Debug)]
struct Limiter {
    principal_quota: Quota,
    ip_quota: Quota,
    tables: Mutex<Tables>,
    counters: Counters,
}

impl Limiter {
    fn new(principal_quota: Quota, ip_quota: Quota, cap: usize) -> Self {
        Self {
            principal_quota,
            ip_quota,
            tables: Mutex::new(Tables {
                principals: Table::new(cap),
                ips: Table::new(cap),
            }),
            counters: Counters::default(),
        }
    }

    /// Checks both keys and spends from both only if both admit the request, so a refusal by
    /// one key never drains the other.
    fn check(&self, principal: Option<&str>, ip: Option<IpAddr>, now: u64) -> Option<Refusal> {
        // A poisoned lock only means another request panicked mid-update of plain numbers;
        // the table is still usable, and refusing every request would be worse.
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let ip = ip.map(ip_key);
        let by_principal =
            principal.map(|p| self.principal_quota.decide(tables.principals.tat(p), now));
        let by_ip = ip.map(|ip| self.ip_quota.decide(tables.ips.tat(&ip), now));
        let wait = [by_principal, by_ip]
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .max();
        if let Some(wait) = wait {
            let refused_principal = matches!(by_principal, Some(Err(_)));
            let refused_ip = matches!(by_ip, Some(Err(_)));
            let audit_principal =
                refused_principal && principal.is_some_and(|p| tables.principals.audit_due(p, now));
            let audit_ip = refused_ip && ip.is_some_and(|ip| tables.ips.audit_due(&ip, now));
            drop(tables);
            let c = &self.counters;
            c.rejected.fetch_add(1, Ordering::Relaxed);
            if refused_principal {
                c.rejected_by_principal.fetch_add(1, Ordering::Relaxed);
            }
            if refused_ip {
                c.rejected_by_ip.fetch_add(1, Ordering::Relaxed);
            }
            return Some(Refusal {
                retry_after_seconds: wait.div_ceil(NANOS_PER_SECOND).max(1),
                audit_principal,
                audit_ip,
                by_principal: refused_principal,
                by_ip: refused_ip,
            });
        }
        let mut evicted = 0;
        if let (Some(p), Some(Ok(tat))) = (principal, by_principal) {
            if let Some(entry) = tables.principals.entries.get_mut(p) {
                entry.tat = tat;
            } else {
                evicted += tables.principals.admit(p.to_owned(), tat, now);
            }
        }
        if let (Some(ip), Some(Ok(tat))) = (ip, by_ip) {
            evicted += tables.ips.admit(ip, tat, now);
        }
        drop(tables);
        if evicted > 0 {
            self.counters.evicted.fetch_add(evicted, Ordering::Relaxed);
        }
        None
    }

    fn stats(&self) -> BudgetStats {
        let (tracked_principals, tracked_ips) = {
            let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
            (tables.principals.entries.len(), tables.ips.entries.len())
        };
        let c = &self.counters;
        BudgetStats {
            rejected: c.rejected.load(Ordering::Relaxed),
            rejected_by_principal: c.rejected_by_principal.load(Ordering::Relaxed),
            rejected_by_ip: c.rejected_by_ip.load(Ordering::Relaxed),
            audited: c.audited.load(Ordering::Relaxed),
            evicted_keys: c.evicted.load(Ordering::Relaxed),
            tracked_principals,
            tracked_ips,
        }
    }
}

/// Counters of one budget, as [`RateLimiter::snapshot`] reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BudgetStats {
    /// Requests refused (by either key).
    pub rejected: u64,
    /// Refusals because the principal's budget was spent.
    pub rejected_by_principal: u64,
    /// Refusals because the client address's budget was spent.
    pub rejected_by_ip: u64,
    /// `ratelimit.reject` audit records written.
    pub audited: u64,
    /// Keys evicted from a full table while they still held state.
    pub evicted_keys: u64,
    /// Principals currently tracked.
    pub tracked_principals: usize,
    /// Client addresses (IPv6: /64 prefixes) currently tracked.
    pub tracked_ips: usize,
}

/// Counters of every budget, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateLimitStats {
    /// The sign-in budget.
    pub sign_in: BudgetStats,
    /// The ingest budget.
    pub ingest: BudgetStats,
    /// The read budget.
    pub read: BudgetStats,
    /// The reveal budget.
    pub reveal: BudgetStats,
}

/// The three budgets of a server (held in [`AppState::rate_limits`]).
#[derive(Debug)]
pub struct RateLimiter {
    origin: Instant,
    sign_in: Limiter,
    ingest: Limiter,
    read: Limiter,
    reveal: Limiter,
}

impl RateLimiter {
    /// The budgets `[limits]` configures.
    pub fn new(limits: &crate::config::LimitsConfig) -> Self {
        let cap = limits.max_rate_limit_keys;
        let sign_in = Quota::new(limits.sign_in_per_minute, 60, limits.sign_in_burst);
        let ingest = Quota::new(limits.ingest_per_second, 1, limits.ingest_burst);
        let read = Quota::new(limits.read_per_second, 1, limits.read_burst);
        let reveal = Quota::new(limits.reveal_per_minute, 60, limits.reveal_burst);
        let share = limits.per_ip_multiplier;
        Self {
            origin: Instant::now(),
            // Sign-in has no principal yet: the address is its only key.
            sign_in: Limiter::new(sign_in, sign_in, cap),
            ingest: Limiter::new(ingest, ingest.times(share), cap),
            read: Limiter::new(read, read.times(share), cap),
            reveal: Limiter::new(reveal, reveal.times(share), cap),
        }
    }

    fn limiter(&self, budget: Budget) -> &Limiter {
        match budget {
            Budget::SignIn => &self.sign_in,
            Budget::Ingest => &self.ingest,
            Budget::Read => &self.read,
            Budget::Reveal => &self.reveal,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Spends one request of `budget` for the principal and the address given, or says how long
    /// to wait. Either key may be absent (no principal before sign-in, no address without a
    /// socket).
    pub fn check(
        &self,
        budget: Budget,
        principal: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Option<Refusal> {
        self.limiter(budget).check(principal, ip, self.now())
    }

    /// The counters, for the metrics endpoint.
    pub fn snapshot(&self) -> RateLimitStats {
        RateLimitStats {
            sign_in: self.sign_in.stats(),
            ingest: self.ingest.stats(),
            read: self.read.stats(),
            reveal: self.reveal.stats(),
        }
    }
}

/// Most keys a table may be configured for: about 100 bytes a key, five tables.
const MAX_KEYS_CEILING: usize = 10_000_000;

/// Checks the rate-limit part of `[limits]` (called by [`crate::config`]'s validation).
pub fn check_config(l: &crate::config::LimitsConfig) -> Result<(), String> {
    for (name, value) in [
        ("sign_in_per_minute", l.sign_in_per_minute),
        ("sign_in_burst", l.sign_in_burst),
        ("ingest_per_second", l.ingest_per_second),
        ("ingest_burst", l.ingest_burst),
        ("read_per_second", l.read_per_second),
        ("read_burst", l.read_burst),
        ("reveal_per_minute", l.reveal_per_minute),
        ("reveal_burst", l.reveal_burst),
        ("per_ip_multiplier", l.per_ip_multiplier),
    ] {
        if value == 0 {
            return Err(format!(
                "limits.{name} must be at least 1 (rate limits cannot be switched off; set a \
                 large value instead)"
            ));
        }
    }
    if !(1..=MAX_KEYS_CEILING).contains(&l.max_rate_limit_keys) {
        return Err(format!(
            "limits.max_rate_limit_keys must lie between 1 and {MAX_KEYS_CEILING}"
        ));
    }
    if l.per_ip_multiplier > 10_000 {
        return Err("limits.per_ip_multiplier must be at most 10000".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The choke point's calls
// ---------------------------------------------------------------------------------------------

/// Before authentication: spends the sign-in budget if this is a sign-in route. `Some` is the
/// 429 to answer.
pub async fn admit_anonymous(
    state: &AppState,
    ctx: &RequestContext,
    method: &Method,
    route: &str,
) -> Option<Response> {
    let sign_in = SIGN_IN_ROUTES
        .iter()
        .any(|(m, r)| *m == method.as_str() && *r == route);
    if !sign_in {
        return None;
    }
    let refusal = state
        .rate_limits
        .check(Budget::SignIn, None, ctx.client_ip)?;
    Some(refuse(state, ctx, Budget::SignIn, route, None, refusal).await)
}

/// After authentication: spends the budget of `action` (reads when the route needs none) for
/// the principal and the address. `Some` is the 429 to answer.
pub async fn admit(
    state: &AppState,
    ctx: &RequestContext,
    route: &str,
    action: Option<Action>,
    principal: &Principal,
) -> Option<Response> {
    let budget = action.map_or(Budget::Read, Budget::of);
    let actor = principal.actor_id();
    let refusal = state
        .rate_limits
        .check(budget, Some(&actor), ctx.client_ip)?;
    Some(refuse(state, ctx, budget, route, Some(principal), refusal).await)
}

async fn refuse(
    state: &AppState,
    ctx: &RequestContext,
    budget: Budget,
    route: &str,
    principal: Option<&Principal>,
    refusal: Refusal,
) -> Response {
    if refusal.audit_principal || refusal.audit_ip {
        let mut keys = Vec::new();
        if refusal.audit_principal {
            keys.push("principal");
        }
        if refusal.audit_ip {
            keys.push("ip");
        }
        tracing::warn!(
            budget = budget.as_str(),
            route,
            client_ip = ?ctx.client_ip,
            "rate limit reached; further refusals of this key are not logged for a minute"
        );
        let actor = principal.map_or_else(Actor::anonymous, Actor::of);
        let event = audit_event(
            state,
            ctx,
            actor,
            "ratelimit.reject",
            route.to_owned(),
            Outcome::Denied,
            serde_json::json!({
                "budget": budget.as_str(),
                "keys": keys,
                "retry_after_seconds": refusal.retry_after_seconds,
            }),
        );
        let event = custos_core::AuditEvent {
            status: Some(429),
            ..event
        };
        // Best effort: the request is refused either way, and a refusal changes nothing.
        match state.store.append_audit(&event).await {
            Ok(_) => {
                state
                    .rate_limits
                    .limiter(budget)
                    .counters
                    .audited
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "audit append failed for a rate-limit refusal"),
        }
    }
    ApiError::rate_limited(refusal.retry_after_seconds).into_response()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const S: u64 = NANOS_PER_SECOND;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn proxies(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.200.3.4")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(
            c.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.7")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "example.com",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let h = xff(&["198.51.100.9"]);
        assert_eq!(
            client_ip(Some(ip("203.0.113.7")), &h, &[]),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(
                Some(ip("203.0.113.7")),
                &h,
                &proxies(&["10.0.0.0/8", "127.0.0.1/32"])
            ),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(client_ip(None, &h, &[]), None);
    }

    #[test]
    fn trusted_proxy_rightmost_untrusted_entry_wins() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        let peer = Some(ip("127.0.0.1"));
        // The client prepended a spoofed address; the proxy appended the real one.
        let h = xff(&["1.1.1.1, 203.0.113.7"]);
        assert_eq!(client_ip(peer, &h, &p), Some(ip("203.0.113.7")));
        // Two proxy hops: the inner proxy's entry is skipped.
        let h = xff(&["1.1.1.1, 203.0.113.7, 10.1.2.3"]);
        assert_eq!(client_ip(peer, &h, &p), Some(ip("203.0.113.7")));
        // Several header lines are one list, in order.
        let h = xff(&["1.1.1.1", "203.0.113.7", "10.1.2.3"]);
        assert_eq!(client_ip(peer, &h, &p), Some(ip("203.0.113.7")));
        // No header: the proxy itself.
        assert_eq!(client_ip(peer, &HeaderMap::new(), &p), peer);
        // Everything trusted: the farthest hop.
        let h = xff(&["10.9.9.9, 10.1.2.3"]);
        assert_eq!(client_ip(peer, &h, &p), Some(ip("10.9.9.9")));
        // Ports are tolerated.
        let h = xff(&["203.0.113.7:5555"]);
        assert_eq!(client_ip(peer, &h, &p), Some(ip("203.0.113.7")));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let p = proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        let peer = Some(ip("127.0.0.1"));
        // Garbage written by a trusted hop: nothing to its left can be trusted.
        let h = xff(&["198.51.100.1, unknown, 10.1.2.3"]);
        assert_eq!(client_ip(peer, &h, &p), Some(ip("10.1.2.3")));
        let h = xff(&["198.51.100.1, not-an-ip"]);
        assert_eq!(client_ip(peer, &h, &p), peer);
        let h = xff(&[""]);
        assert_eq!(client_ip(peer, &h, &p), peer);
        // Garbage to the left of the client is never reached.
        let h = xff(&["<script>, 203.0.113.7"]);
        assert_eq!(client_ip(peer, &h, &p), Some(ip("203.0.113.7")));
        // A header that is not text is ignored.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(client_ip(peer, &h, &p), peer);
    }

    #[test]
    fn ipv6_peers_and_entries() {
        let p = proxies(&["::1/128", "fd00::/8"]);
        let h = xff(&["2001:db8::dead, 2001:db8::7, fd00::2"]);
        assert_eq!(client_ip(Some(ip("::1")), &h, &p), Some(ip("2001:db8::7")));
        let h = xff(&["[2001:db8::7]:443"]);
        assert_eq!(client_ip(Some(ip("::1")), &h, &p), Some(ip("2001:db8::7")));
        // An IPv4-mapped peer is matched against IPv4 blocks and reported as IPv4.
        let p4 = proxies(&["127.0.0.1/32"]);
        let h = xff(&["203.0.113.7"]);
        assert_eq!(
            client_ip(Some(ip("::ffff:127.0.0.1")), &h, &p4),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(Some(ip("::ffff:198.51.100.9")), &h, &p4),
            Some(ip("198.51.100.9"))
        );
        // Rate limits group IPv6 by /64.
        assert_eq!(ip_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(ip_key(ip("203.0.113.7")), ip("203.0.113.7"));
    }

    #[test]
    fn burst_then_steady_rate() {
        // 2 per second, bursts of 4.
        let q = Quota::new(2, 1, 4);
        let l = Limiter::new(q, q, 100);
        let t0 = 10 * S;
        for _ in 0..4 {
            assert_eq!(l.check(Some("a"), None, t0), None);
        }
        let refused = l.check(Some("a"), None, t0).unwrap();
        assert!(refused.by_principal && !refused.by_ip);
        // One token comes back every half second.
        assert_eq!(refused.retry_after_seconds, 1);
        assert!(l.check(Some("a"), None, t0 + S / 2 - 1).is_some());
        assert_eq!(l.check(Some("a"), None, t0 + S / 2), None);
        assert!(l.check(Some("a"), None, t0 + S / 2).is_some());
        // Steady: one every 0.5 s is always admitted, 2 per 0.5 s is not.
        let mut t = t0 + S / 2;
        for _ in 0..20 {
            t += S / 2;
            assert_eq!(l.check(Some("a"), None, t), None);
            assert!(l.check(Some("a"), None, t).is_some());
        }
        // Resting refills the burst, not more.
        t += 100 * S;
        for _ in 0..4 {
            assert_eq!(l.check(Some("a"), None, t), None);
        }
        assert!(l.check(Some("a"), None, t).is_some());
        // Other keys are independent.
        assert_eq!(l.check(Some("b"), None, t), None);
        let stats = l.stats();
        assert_eq!(stats.rejected, stats.rejected_by_principal);
        assert_eq!(stats.rejected_by_ip, 0);
        assert_eq!(stats.tracked_principals, 2);
    }

    #[test]
    fn retry_after_is_the_wait_rounded_up_and_at_least_one() {
        // 20 per minute (one every 3 s), bursts of 10.
        let q = Quota::new(20, 60, 10);
        let l = Limiter::new(q, q, 100);
        let addr = Some(ip("203.0.113.7"));
        for _ in 0..10 {
            assert_eq!(l.check(None, addr, 0), None);
        }
        assert_eq!(l.check(None, addr, 0).unwrap().retry_after_seconds, 3);
        assert_eq!(l.check(None, addr, S).unwrap().retry_after_seconds, 2);
        assert_eq!(
            l.check(None, addr, 3 * S - 1).unwrap().retry_after_seconds,
            1
        );
        assert_eq!(l.check(None, addr, 3 * S), None);
        // Refusals do not spend: waiting the answer always works.
        for _ in 0..50 {
            assert!(l.check(None, addr, 3 * S + 1).is_some());
        }
        assert_eq!(l.check(None, addr, 6 * S), None);
    }

    #[test]
    fn both_keys_must_admit_and_a_refusal_spends_neither() {
        let q = Quota::new(1, 1, 2);
        let l = Limiter::new(q, q.times(2), 100);
        let addr = Some(ip("198.51.100.9"));
        assert_eq!(l.check(Some("a"), addr, 0), None);
        assert_eq!(l.check(Some("a"), addr, 0), None);
        let r = l.check(Some("a"), addr, 0).unwrap();
        assert!(r.by_principal && !r.by_ip);
        // The address has 4; "a"'s refusals did not spend them.
        assert_eq!(l.check(Some("b"), addr, 0), None);
        assert_eq!(l.check(Some("b"), addr, 0), None);
        let r = l.check(Some("c"), addr, 0).unwrap();
        assert!(r.by_ip && !r.by_principal);
        // "c" was refused by the address, so its own budget is untouched elsewhere.
        assert_eq!(l.check(Some("c"), Some(ip("198.51.100.10")), 0), None);
        assert_eq!(l.check(Some("c"), Some(ip("198.51.100.10")), 0), None);
    }

    #[test]
    fn refusals_are_audited_once_per_key_per_minute() {
        // One request per ten minutes: every later request in this test is refused.
        let q = Quota::new(1, 600, 1);
        let l = Limiter::new(q, q, 100);
        let addr = Some(ip("203.0.113.7"));
        assert_eq!(l.check(None, addr, 0), None);
        let first = l.check(None, addr, 1).unwrap();
        assert!(first.audit_ip && !first.audit_principal);
        for t in 2..1000 {
            assert!(!l.check(None, addr, t).unwrap().audit_ip);
        }
        assert!(!l.check(None, addr, 60 * S).unwrap().audit_ip);
        assert!(l.check(None, addr, 60 * S + 1).unwrap().audit_ip);
    }

    #[test]
    fn the_key_table_is_capped_and_evicts_the_stalest() {
        // One request per 10 s; a cap of 16 keys.
        let q = Quota::new(1, 10, 1);
        let l = Limiter::new(q, q, 16);
        for i in 0..16u64 {
            assert_eq!(l.check(Some(&format!("k{i}")), None, i * S), None);
        }
        assert_eq!(l.stats().tracked_principals, 16);
        // At t = 20 s, keys k0..k10 are rested (TAT ≤ now): a new key prunes them for free.
        assert_eq!(l.check(Some("new"), None, 20 * S), None);
        let s = l.stats();
        assert_eq!(s.tracked_principals, 16 - 11 + 1);
        assert_eq!(
            s.evicted_keys, 0,
            "rested keys are not counted as evictions"
        );
        // Fill with keys that all still hold state, then overflow: the stalest eighth goes.
        let l = Limiter::new(q, q, 16);
        for i in 0..16u64 {
            assert_eq!(l.check(Some(&format!("k{i}")), None, i), None);
        }
        assert_eq!(l.check(Some("new"), None, 16), None);
        let s = l.stats();
        assert_eq!(s.tracked_principals, 15);
        assert_eq!(s.evicted_keys, 2);
        // The freshest keys kept their state; the evicted ones start afresh.
        assert!(l.check(Some("k15"), None, 17).is_some());
        assert_eq!(l.check(Some("k0"), None, 17), None);
        // Never more than the cap, whatever arrives.
        for i in 0..10_000u64 {
            let _ = l.check(Some(&format!("flood{i}")), None, 100 + i);
            assert!(l.stats().tracked_principals <= 16);
        }
        // A cap of one works too.
        let tiny = Limiter::new(q, q, 1);
        for i in 0..10u64 {
            assert_eq!(
                tiny.check(None, Some(IpAddr::from([10, 0, 0, i as u8])), i),
                None
            );
            assert_eq!(tiny.stats().tracked_ips, 1);
        }
    }

    #[test]
    fn budgets_by_action() {
        assert_eq!(Budget::of(Action::PredictionsWrite), Budget::Ingest);
        assert_eq!(Budget::of(Action::LabelsWrite), Budget::Ingest);
        assert_eq!(Budget::of(Action::ReferencesWrite), Budget::Ingest);
        assert_eq!(Budget::of(Action::ModelsRead), Budget::Read);
        assert_eq!(Budget::of(Action::TokensManage), Budget::Read);
        let q = Quota::new(20, 60, 10);
        assert_eq!(q.interval, 3 * S);
        assert_eq!(q.times(4).burst, 40);
        assert_eq!(q.times(4).interval, 3 * S / 4);
    }
}
