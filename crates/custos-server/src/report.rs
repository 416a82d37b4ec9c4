//! Reports: drift, data quality and performance of one model and window, as JSON or as one
//! self-contained HTML file (inline stylesheet and SVG charts, no script, nothing fetched), so
//! it can be mailed, archived or attached to a ticket and still render the same.
//!
//! Owns the report's assembly and its HTML, and the quality and performance sections that the
//! web UI's model page shows too. Sections the caller may not read are left out (the report
//! route needs `drift:read`; quality needs `profiles:read`, performance `performance:read`).

use crate::auth::Authorized;
use crate::drift::{Chunking, ReferenceSpec};
use crate::error::ApiError;
use crate::state::{AppState, ModelEntry};
use chrono::{DateTime, Utc};
use custos_proto::{PerformanceChunkBody, PerformanceResponse, QualityResponse, ReportBody};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

/// Assembles a report; sections the caller may not read, or that cannot be computed for this
/// window (performance over more rows than one request may read), are left out.
pub async fn build(
    state: &AppState,
    who: &Authorized,
    model: &ModelEntry,
    reference: &ReferenceSpec,
    current: (DateTime<Utc>, DateTime<Utc>),
    chunking: Chunking,
) -> Result<ReportBody, ApiError> {
    let name = model.schema.name();
    let sections = who.sections(name);
    let drift = crate::drift::drift(state, model, reference, current, chunking).await?;
    let quality = if sections.profiles {
        Some(crate::quality::quality(state, model, Some(reference), current).await?)
    } else {
        None
    };
    let performance = if sections.performance {
        crate::performance::performance(state, model, current, chunking, None)
            .await
            .ok()
    } else {
        None
    };
    Ok(ReportBody {
        model: name.to_string(),
        generated_at: state.clock.now(),
        drift,
        quality,
        performance,
    })
}

fn share(value: Option<&Value>) -> String {
    match value.and_then(Value::as_f64) {
        Some(v) => format!("{:.2} %", v * 100.0),
        None => "–".into(),
    }
}

fn number(value: Option<&Value>) -> String {
    match value.and_then(Value::as_f64) {
        Some(v) => format!("{v:.4}"),
        None => "–".into(),
    }
}

/// The data-quality card: one row per field, then volume and freshness.
pub(crate) fn quality_section(q: &QualityResponse) -> Markup {
    let freshness = q
        .freshness
        .get("verdict")
        .and_then(Value::as_str)
        .unwrap_or("");
    html! {
        p {
            "Latest event: "
            @match q.last_event { Some(t) => { (t.format("%Y-%m-%d %H:%M UTC")) } None => { "none" } }
            " — "
            @if freshness == "stale" || freshness == "no_data" { strong.bad { "silent" } } @else { strong.good { "fresh" } }
            ". " (q.anomalous_hours) " of " (q.volume.len()) " hours outside their volume band."
            @if !q.missing_fields.is_empty() {
                " " strong.bad { "Fields no longer sent: " (q.missing_fields.join(", ")) }
            }
            @if !q.rejected.is_empty() {
                " " strong.bad { "Refused rows: " }
                @for (i, r) in q.rejected.iter().enumerate() {
                    @if i > 0 { ", " }
                    (r.field) " " (r.rows)
                }
            }
        }
        table {
            thead { tr { th { "Field" } th.num { "Values" } th.num { "Missing" } th.num { "Invalid" } th.num { "Out of reference range" } th.num { "Unseen categories" } } }
            tbody {
                @for f in &q.features {
                    tr {
                        td { (f.feature) }
                        td.num { (f.report.get("count").and_then(Value::as_u64).unwrap_or_default()) }
                        td.num { (share(f.report.get("missing_share"))) }
                        td.num { (share(f.report.get("invalid_share"))) }
                        td.num { (share(f.report.get("out_of_range").and_then(|o| o.get("share")))) }
                        td.num { (share(f.report.get("unseen").and_then(|o| o.get("share")))) }
                    }
                }
            }
        }
    }
}

fn metric_cells(chunk: &PerformanceChunkBody, names: &[&str]) -> Markup {
    html! {
        @for name in names {
            td.num {
                (number(chunk.realized.as_ref().and_then(|r| r.get(*name))))
                @if let Some(estimate) = chunk.estimated.as_ref().and_then(|e| e.get(*name)) {
                    br;
                    small.muted {
                        "est. " (number(estimate.get("value")))
                        " [" (number(estimate.get("lower"))) ", " (number(estimate.get("upper"))) "]"
                    }
                }
            }
        }
    }
}

/// The performance card: realized metrics (and CBPE estimates with bands) overall and per chunk.
pub(crate) fn performance_section(p: &PerformanceResponse) -> Markup {
    let names: &[&str] = if p.prediction_type == "regression" {
        &["mae", "rmse", "mape", "r2"]
    } else {
        &["accuracy", "precision", "recall", "f1", "roc_auc"]
    };
    html! {
        p {
            (p.overall.labelled) " of " (p.overall.predictions) " predictions labelled."
            @if let Some(reference) = &p.estimation_reference {
                " Estimates without labels (CBPE) are calibrated on reference " code { (reference) } "; the band is ± 3 sampling errors."
            }
        }
        table {
            thead { tr { th { "Window" } th.num { "Predictions" } th.num { "Labelled" } @for n in names { th.num { (n) } } } }
            tbody {
                tr { td { strong { "whole window" } } td.num { (p.overall.predictions) } td.num { (p.overall.labelled) } (metric_cells(&p.overall, names)) }
                @for c in &p.chunks {
                    tr {
                        td { @if let Some(s) = c.start { (s.format("%Y-%m-%d %H:00")) } }
                        td.num { (c.predictions) } td.num { (c.labelled) } (metric_cells(c, names))
                    }
                }
            }
        }
    }
}

/// The whole report as one HTML document.
pub fn render_html(report: &ReportBody) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Drift report · " (report.model) }
                style { (crate::ui::STYLESHEET) }
            }
            body {
                main {
                    h1 { "Drift report: " (report.model) }
                    p.muted {
                        "Generated " (report.generated_at.format("%Y-%m-%d %H:%M UTC")) " by Custos. "
                        @if let Some(v) = report.drift.config_version { "Monitoring configuration version " (v) ". " }
                        @if let Some(sha) = &report.drift.reference.sha256 { "Reference file SHA-256 " code { (sha) } "." }
                    }
                    section.card { h2 { "Drift" } (crate::ui::drift_section(&report.drift)) }
                    @if let Some(q) = &report.quality { section.card { h2 { "Data quality" } (quality_section(q)) } }
                    @if let Some(p) = &report.performance { section.card { h2 { "Performance" } (performance_section(p)) } }
                }
            }
        }
    };
    markup.into_string()
}
