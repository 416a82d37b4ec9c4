//! The auditor's pages: the audit log with filters, its verification status and newest signed
//! checkpoint; a model's configuration history with the diff of any two versions, the changes
//! waiting for a second person, and the model's lineage.
//!
//! Read-only by construction: no page here has a form that changes anything (filters and the
//! diff selection are GET forms), and access is the choke point's (`audit:read` for the log,
//! `models:read` on the model for its history). Rendering only; the facts come from the same
//! functions the API uses.

use crate::auth::Authorized;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

/// Filters of the audit log page.
#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    /// Actor id contains.
    #[serde(default)]
    actor: String,
    /// Action starts with.
    #[serde(default)]
    action: String,
    /// `success`, `failure`, `denied` or empty.
    #[serde(default)]
    outcome: String,
    /// Show entries before this position (paging back).
    before: Option<i64>,
}

/// Entries shown per page, and scanned at most per page while filtering.
const PAGE: usize = 100;
const SCAN: i64 = 20_000;

fn matches(filter: &AuditFilter, record: &serde_json::Value) -> bool {
    let field = |name: &str| record.get(name).and_then(|v| v.as_str()).unwrap_or("");
    (filter.actor.is_empty() || field("actor").contains(filter.actor.trim()))
        && (filter.action.is_empty() || field("action").starts_with(filter.action.trim()))
        && (filter.outcome.is_empty() || field("outcome") == filter.outcome)
}

/// `GET /ui/audit`.
pub async fn audit_page(
    State(state): State<AppState>,
    Extension(_who): Extension<Authorized>,
    Query(filter): Query<AuditFilter>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let verification =
        crate::audit_api::verify_body(state.store.verify_audit_log(None, &[]).await?);
    let checkpoint = state.store.latest_audit_checkpoint().await?;
    let keys = state.store.audit_signing_keys().await?;
    let head = state.store.audit_head().await?.map_or(0, |(seq, _)| seq);
    let anchor = state.store.audit_anchor().await?;

    // Newest first: walk back from `before` in windows until a page is full.
    let mut shown: Vec<(i64, serde_json::Value)> = Vec::new();
    let mut upper = filter
        .before
        .unwrap_or(head.saturating_add(1))
        .min(head + 1);
    let floor = upper.saturating_sub(SCAN).max(0);
    while upper > floor && shown.len() < PAGE {
        let lower = upper.saturating_sub(500).max(floor);
        let rows = state
            .store
            .audit_entries(lower, u32::try_from(upper - lower).unwrap_or(500))
            .await?;
        for row in rows.iter().rev() {
            if row.seq >= upper {
                continue;
            }
            let record: serde_json::Value =
                serde_json::from_str(&row.record_json).unwrap_or_default();
            if matches(&filter, &record) && shown.len() < PAGE {
                shown.push((row.seq, record));
            }
        }
        upper = lower;
    }
    let next_before = shown.last().map(|(seq, _)| *seq);
    let now = state.clock.now();

    Ok(crate::ui::with_csrf(&headers, |csrf| {
        crate::ui::page(
            "Audit log",
            true,
            Some(csrf),
            html! {
                p.crumbs { a href="/ui" { "Models" } " / audit log" }
                h1 { "Audit log" }
                div.card #verification {
                    @if verification.ok {
                        p.good #verified { "Verified" }
                        p {
                            (verification.entries) " entries checked: every chain hash, position and "
                            (verification.checkpoints) " signed checkpoints match; "
                            (verification.unsigned_tail) " newest entries not yet signed."
                        }
                    } @else {
                        p.bad #broken { "Verification FAILED" }
                        p { (verification.problem.clone().unwrap_or_default()) }
                    }
                    @if let Some(cp) = &checkpoint {
                        p.muted {
                            "Newest checkpoint covers " (cp.tree_size) " of " (head) " entries, signed "
                            (now.signed_duration_since(cp.signed_at).num_seconds()) " s ago with key version "
                            (cp.key_version) "."
                        }
                    }
                    @if anchor > 0 {
                        p.muted { "Entries before " (anchor) " were removed by retention; verification starts at that checkpoint." }
                    }
                    details {
                        summary { "Public keys (for " code { "custos audit verify --trusted-key" } ")" }
                        ul {
                            @for key in &keys {
                                li {
                                    "v" (key.version) ": " code { (key.verifier_key) }
                                    " — from " (key.valid_from.format("%Y-%m-%d %H:%M UTC"))
                                    @if let Some(until) = key.valid_until { " until " (until.format("%Y-%m-%d %H:%M UTC")) }
                                }
                            }
                        }
                    }
                }
                form.filters method="get" action="/ui/audit" {
                    label { "Actor " input type="text" name="actor" value=(filter.actor); }
                    label { "Action " input type="text" name="action" value=(filter.action) placeholder="e.g. auth."; }
                    label { "Outcome "
                        select name="outcome" {
                            @for (value, text) in [("", "any"), ("success", "success"), ("failure", "failure"), ("denied", "denied")] {
                                option value=(value) selected[filter.outcome == value] { (text) }
                            }
                        }
                    }
                    button type="submit" { "Filter" }
                }
                table.audit #audit-log {
                    thead { tr { th.num { "#" } th { "Time (UTC)" } th { "Actor" } th { "Action" } th { "Resource" } th { "Outcome" } th { "Source" } } }
                    tbody {
                        @for (seq, record) in &shown {
                            tr {
                                td.num { (seq) }
                                td { (record["time"].as_str().unwrap_or("")) }
                                td { (record["actor"].as_str().unwrap_or("")) " " span.muted { (record["actor_type"].as_str().unwrap_or("")) } }
                                td { code { (record["action"].as_str().unwrap_or("")) } }
                                td { (record["resource"].as_str().unwrap_or("")) }
                                td class=(if record["outcome"] == "success" { "good" } else { "bad" }) { (record["outcome"].as_str().unwrap_or("")) }
                                td.muted { (record["source_ip"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
                @if shown.is_empty() { p.muted { "No entries match." } }
                @if let Some(before) = next_before {
                    @if before > 1 {
                        p { a href={ "/ui/audit?before=" (before) "&actor=" (filter.actor) "&action=" (filter.action) "&outcome=" (filter.outcome) } { "Older entries →" } }
                    }
                }
            },
        )
    }))
}

/// Which versions to compare on the history page.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    from: Option<i64>,
    to: Option<i64>,
}

fn value_text(value: Option<&serde_json::Value>) -> String {
    value.map_or_else(|| "—".to_owned(), serde_json::Value::to_string)
}

/// `GET /ui/models/{model}/history`.
pub async fn history_page(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let entry = state.model(&crate::api::model_name(&model)?).await?;
    let versions = state.store.monitoring_config_versions(entry.id).await?;
    let changes = state.store.pending_changes(entry.id, false).await?;
    let references = state.store.references(entry.id).await?;
    let latest = versions.last().map_or(0, |v| v.version);
    let to = q.to.unwrap_or(latest);
    let from = q.from.unwrap_or(to.saturating_sub(1));
    let diff = if from >= 1 && to >= 1 && from != to {
        Some(crate::history_api::diff_of(&state, &entry, from, to).await?)
    } else {
        None
    };
    let name = entry.schema.name().to_string();
    Ok(crate::ui::with_csrf(&headers, |csrf| {
        crate::ui::page(
            &format!("{name} history"),
            true,
            Some(csrf),
            html! {
                p.crumbs { a href="/ui" { "Models" } " / " a href={ "/ui/models/" (name) } { (name) } " / history" }
                h1 { "Configuration history and lineage" }
                h2 { "Versions" }
                table #versions {
                    thead { tr { th.num { "Version" } th { "Author" } th { "When (UTC)" } th { "Reason" } th { "Approved by" } } }
                    tbody {
                        @for v in &versions {
                            tr {
                                td.num { (v.version) }
                                td { (v.created_by) }
                                td { (v.created_at.format("%Y-%m-%d %H:%M:%S")) }
                                td { (v.reason.clone().unwrap_or_default()) }
                                td { (v.approved_by.clone().unwrap_or_default()) }
                            }
                        }
                    }
                }
                @if versions.is_empty() { p.muted { "The model runs on the default configuration; it was never changed." } }
                @if versions.len() >= 2 {
                    form method="get" action={ "/ui/models/" (name) "/history" } {
                        label { "Compare " input type="number" name="from" value=(from) min="1" max=(latest); }
                        label { " with " input type="number" name="to" value=(to) min="1" max=(latest); }
                        button type="submit" { "Diff" }
                    }
                }
                (diff_table(diff.as_ref()))
                @if !changes.is_empty() {
                    h2 { "Changes proposed for approval" }
                    table #changes {
                        thead { tr { th.num { "Id" } th { "Status" } th { "Asked by" } th { "Why weaker" } th { "Decided by" } } }
                        tbody {
                            @for c in &changes {
                                tr {
                                    td.num { (c.id) }
                                    td { (c.status) }
                                    td { (c.requested_by) }
                                    td { (c.weakenings) }
                                    td { (c.decided_by.clone().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
                h2 { "Lineage" }
                p {
                    "Registered " (entry.created_at.format("%Y-%m-%d %H:%M UTC"))
                    "; drift results and reports name the configuration version they were computed under."
                }
                table #references {
                    thead { tr { th { "Reference data set" } th.num { "Rows" } th { "SHA-256 of the upload" } th { "Uploaded by" } th { "When (UTC)" } } }
                    tbody {
                        @for r in &references {
                            tr {
                                td { (r.name) }
                                td.num { (r.row_count) }
                                td { code { (hex::encode(r.sha256)) } }
                                td { (r.created_by) }
                                td { (r.created_at.format("%Y-%m-%d %H:%M")) }
                            }
                        }
                    }
                }
            },
        )
    }))
}

fn diff_table(diff: Option<&crate::history_api::DiffBody>) -> Markup {
    html! {
        @if let Some(d) = diff {
            h2 #diff { "Version " (d.from) " → " (d.to) }
            @if d.changes.is_empty() { p.muted { "No differences." } }
            @else {
                table.diff {
                    thead { tr { th { "Setting" } th { "Before" } th { "After" } th { "" } } }
                    tbody {
                        @for c in &d.changes {
                            @let weaker = d.weakenings.iter().any(|w| w.path.starts_with(&c.path) || c.path.starts_with(&w.path));
                            tr {
                                td { code { (c.path) } }
                                td { code { (value_text(c.before.as_ref())) } }
                                td { code { (value_text(c.after.as_ref())) } }
                                td { @if weaker { span.bad { "weakens monitoring" } } }
                            }
                        }
                    }
                }
            }
        }
    }
}
