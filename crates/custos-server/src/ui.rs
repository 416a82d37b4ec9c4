//! The web UI: server-rendered HTML with inline SVG charts and no scripts at all, served under a
//! Content-Security-Policy that forbids scripts, inline styles and every outside origin.
//!
//! Pages: sign-in, the model list, and a model page with hourly volume and the drift table.
//! Access is decided by the choke point like every other route; sign-in creates a server-side
//! session whose random id is the only thing the cookie carries. Forms carry a CSRF token tied to
//! a separate cookie (double submit), and the session cookie is `SameSite=Strict`.

use crate::auth::{Authorized, SESSION_COOKIE, SignInError, cookie, sign_in};
use crate::context::RequestContext;
use crate::drift::{Chunking, ReferenceSpec};
use crate::error::ApiError;
use crate::local_users::sign_in_password;
use crate::query;
use crate::state::AppState;
use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};
use custos_core::{Action, ModelName};
use custos_proto::{DriftResponse, VolumePoint};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

const CSRF_COOKIE: &str = "custos_csrf";
/// The one stylesheet (served at `/ui/static/custos.css`, inlined into HTML reports).
pub(crate) const STYLESHEET: &str = include_str!("ui/custos.css");

pub(crate) fn page(title: &str, signed_in: bool, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Custos" }
                link rel="stylesheet" href="/ui/static/custos.css";
            }
            body {
                header.top {
                    a.brand href="/ui" { "Custos" }
                    @if signed_in {
                        form.logout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(csrf.unwrap_or(""));
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `GET /ui/static/custos.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// `GET /` → the UI.
pub async fn root() -> Redirect {
    Redirect::to("/ui")
}

fn csrf_cookie(value: &str) -> String {
    format!("{CSRF_COOKIE}={value}; Path=/ui; HttpOnly; Secure; SameSite=Strict")
}

/// `GET /ui/login`.
pub async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, None, StatusCode::OK, None)
}

/// The sign-in page with a refusal message (used by the single sign-on callback).
pub(crate) fn login_refused(state: &AppState, message: &str, status: StatusCode) -> Response {
    login_form(state, Some(message), status, None)
}

/// The `Set-Cookie` value of a new session.
pub(crate) fn session_cookie(session: &str) -> String {
    format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// The sign-in page. A failed attempt is answered with the CSRF token the browser already holds
/// (`reuse`), so that every refusal renders byte for byte the same page and nothing in it tells
/// an unknown user from a wrong password.
fn login_form(
    state: &AppState,
    error: Option<&str>,
    status: StatusCode,
    reuse: Option<&str>,
) -> Response {
    let Some(csrf) = reuse.map(str::to_owned).or_else(crate::context::secret_id) else {
        return ApiError::internal("no randomness for a CSRF token").into_response();
    };
    let sso = state.oidc.as_ref().map(|o| o.display_name().to_owned());
    let markup = page(
        "Sign in",
        false,
        None,
        html! {
            section.card.narrow {
                h1 { "Sign in" }
                p.muted {
                    "Sign in with your user name and password. To use the administrator secret from "
                    code { "<data-dir>/bootstrap-token" } ", leave the user name empty. API tokens are for machines and cannot sign in here."
                }
                @if let Some(error) = error { p.error role="alert" { (error) } }
                @if let Some(sso) = &sso {
                    p { a.button #sso href="/ui/oidc/start" { "Sign in with " (sso) } }
                    p.muted { "Or with a user name and password:" }
                }
                form method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="username" { "User name" }
                    input #username type="text" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" autofocus;
                    label for="secret" { "Password or administrator secret" }
                    input #secret type="password" name="secret" autocomplete="current-password" required;
                    button type="submit" { "Sign in" }
                }
            }
        },
    );
    let mut response = (status, Html(markup.into_string())).into_response();
    if reuse.is_none()
        && let Ok(v) = HeaderValue::from_str(&csrf_cookie(&csrf))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    /// Empty (or absent) for the bootstrap secret.
    #[serde(default)]
    username: String,
    secret: String,
    csrf: String,
}

fn csrf_ok(headers: &HeaderMap, submitted: &str) -> bool {
    cookie(headers, CSRF_COOKIE).is_some_and(|expected| {
        !expected.is_empty()
            && custos_crypto::token::constant_time_eq(expected.as_bytes(), submitted.as_bytes())
    })
}

/// `POST /ui/login`: checks the form's CSRF token, then [`sign_in`] decides; a session is opened
/// only for the principal it returns.
pub async fn login(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !csrf_ok(&headers, &form.csrf) {
        return login_form(
            &state,
            Some("Your sign-in form expired; please try again."),
            StatusCode::FORBIDDEN,
            None,
        );
    }
    let attempt = if form.username.trim().is_empty() {
        sign_in(&state, &ctx, &form.secret).await
    } else {
        sign_in_password(&state, &ctx, &form.username, &form.secret).await
    };
    match attempt {
        Ok(principal) => {
            let Some(session) = state.sessions.create(principal, state.clock.now()) else {
                return ApiError::internal("no randomness for a session id").into_response();
            };
            let mut response = Redirect::to("/ui").into_response();
            if let Ok(v) = HeaderValue::from_str(&session_cookie(&session)) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(SignInError::Throttled) => login_form(
            &state,
            Some("Too many failed attempts; wait a minute."),
            StatusCode::TOO_MANY_REQUESTS,
            Some(&form.csrf),
        ),
        Err(SignInError::Rejected) => login_form(
            &state,
            Some("Those credentials were not accepted."),
            StatusCode::UNAUTHORIZED,
            Some(&form.csrf),
        ),
        Err(SignInError::Internal(e)) => e.into_response(),
    }
}

/// The sign-out form.
#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /ui/logout`: deletes the server-side session.
pub async fn logout(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !csrf_ok(&headers, &form.csrf) {
        return ApiError::forbidden().into_response();
    }
    if let Some(session) = &who.session {
        state.sessions.remove(session);
        // The session is gone whatever happens next: ending access is never held back by a
        // failing audit store (the failure is logged).
        let event = crate::auth::audit_event(
            &state,
            &ctx,
            crate::auth::Actor::of(&who.principal),
            "auth.sign_out",
            "ui".into(),
            custos_core::Outcome::Success,
            serde_json::json!({}),
        );
        if let Err(e) = state.store.append_audit(&event).await {
            tracing::error!(error = %e, "audit append failed for a sign-out");
        }
    }
    let mut response = Redirect::to("/ui/login").into_response();
    let expired =
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Pages that carry forms need a CSRF cookie; reuse the one the browser has or mint one.
pub(crate) fn with_csrf(headers: &HeaderMap, render: impl FnOnce(&str) -> Markup) -> Response {
    let existing = cookie(headers, CSRF_COOKIE).map(str::to_owned);
    let Some(token) = existing.clone().or_else(crate::context::secret_id) else {
        return ApiError::internal("no randomness for a CSRF token").into_response();
    };
    let mut response = Html(render(&token).into_string()).into_response();
    if existing.is_none()
        && let Ok(v) = HeaderValue::from_str(&csrf_cookie(&token))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /ui`: the models the caller may read.
pub async fn models_page(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut rows = Vec::new();
    let now = state.clock.now();
    for row in state.store.list_models().await? {
        let entry = AppState::entry_from_row(row)?;
        if !who.allows(Action::ModelsRead, entry.schema.name()) {
            continue;
        }
        let hours = query::hour_range(now - Duration::days(1), now)?;
        let last_day: u64 = state
            .store
            .volume(entry.id, hours)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum();
        rows.push((entry, last_day));
    }
    Ok(with_csrf(&headers, |csrf| {
        page(
            "Models",
            true,
            Some(csrf),
            html! {
                h1 { "Models" }
                @if who.principal.allows(Action::AuditRead, None) {
                    p { a #audit-link href="/ui/audit" { "Audit log" } " — who did what, verified against signed checkpoints." }
                }
                @if rows.is_empty() {
                    p.muted { "No models yet. Register one with " code { "POST /api/v1/models" } "." }
                } @else {
                    table.models {
                        thead { tr { th { "Model" } th { "Features" } th { "Prediction" } th.num { "Rows, last 24 h" } th { "Registered" } } }
                        tbody {
                            @for (entry, last_day) in &rows {
                                tr {
                                    td { a href={ "/ui/models/" (entry.schema.name()) } { (entry.schema.name()) } }
                                    td.num { (entry.schema.spec().features.len()) }
                                    td { (entry.schema.prediction().name) }
                                    td.num { (last_day) }
                                    td { (entry.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                }
                            }
                        }
                    }
                }
            },
        )
    }))
}

/// Optional window overrides for the model page.
#[derive(Debug, Deserialize)]
pub struct ModelPageQuery {
    reference_start: Option<DateTime<Utc>>,
    reference_end: Option<DateTime<Utc>>,
    current_start: Option<DateTime<Utc>>,
    current_end: Option<DateTime<Utc>>,
}

/// A time window, start inclusive, end exclusive.
type Window = (DateTime<Utc>, DateTime<Utc>);

/// Picks default windows from where the data is: the first day seen as reference and the last
/// day seen as current (halves of the span when there is less than two days of data).
fn default_windows(points: &[VolumePoint]) -> Option<(Window, Window)> {
    let first = points.first()?.hour;
    let last = points.last()?.hour + Duration::hours(1);
    let span = last - first;
    if span < Duration::hours(2) {
        return None;
    }
    let window = if span >= Duration::hours(48) {
        Duration::hours(24)
    } else {
        Duration::hours(span.num_hours() / 2)
    };
    Some(((first, first + window), (last - window, last)))
}

/// `GET /ui/models/{model}`.
/// The alerts card: firing and pending series first, then how many rules are quiet.
fn alerts_section(rules: usize, series: &[custos_store::AlertSeriesRow]) -> Markup {
    let active: Vec<(
        &custos_store::AlertSeriesRow,
        custos_core::alerts::SeriesState,
    )> = series
        .iter()
        .filter(|s| s.state != "inactive")
        .map(|s| (s, serde_json::from_str(&s.state_json).unwrap_or_default()))
        .collect();
    let number = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into());
    html! {
        @if rules == 0 {
            p.muted { "No alert rules. Add them with PUT /api/v1/models/{model}/alerts or custos apply." }
        } @else if active.is_empty() {
            p { "All " (rules) " rules are quiet." }
        } @else {
            table {
                thead { tr { th { "Rule" } th { "Feature" } th { "State" } th { "Value" } th { "Threshold" } th { "Since" } th { "Acknowledged by" } } }
                tbody {
                    @for (row, state) in &active {
                        tr {
                            td { (row.rule) }
                            td { (row.series) }
                            td { strong { (row.state) } }
                            td { (number(state.value)) }
                            td { (number(state.threshold)) }
                            td { (state.active_since.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()) }
                            td { (row.acknowledged_by.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn model_page(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Path(model): Path<String>,
    Query(q): Query<ModelPageQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let name = ModelName::parse(&model).map_err(|_| ApiError::not_found("model"))?;
    let entry = state.model(&name).await?;
    let now = state.clock.now();
    let sections = who.sections(&name);
    let volume = if sections.profiles {
        let hours = query::hour_range(now - Duration::days(14), now + Duration::hours(1))?;
        Some(query::volume(&state, &entry, hours).await?.points)
    } else {
        None
    };
    let windows = match (
        q.reference_start,
        q.reference_end,
        q.current_start,
        q.current_end,
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => Some(((a, b), (c, d))),
        _ => volume.as_deref().and_then(default_windows),
    };
    // An uploaded reference wins over the default window unless the page was asked for a
    // window; the current window is the default one either way.
    let has_upload = !state.store.references(entry.id).await?.is_empty();
    let explicit = q.reference_start.is_some() && q.reference_end.is_some();
    let drift = match windows {
        Some(((a, b), current)) => {
            let reference = if has_upload && !explicit {
                ReferenceSpec::Uploaded(None)
            } else {
                ReferenceSpec::Window(a, b)
            };
            let chunking = if (current.1 - current.0) > Duration::hours(48) {
                Chunking::Hours(24)
            } else {
                Chunking::Hours(1)
            };
            Some((
                crate::drift::drift(&state, &entry, &reference, current, chunking).await?,
                reference,
                current,
                chunking,
            ))
        }
        None => None,
    };
    let (drift, quality, performance) = match drift {
        Some((drift, reference, current, chunking)) => {
            let quality = if sections.profiles {
                Some(crate::quality::quality(&state, &entry, Some(&reference), current).await?)
            } else {
                None
            };
            // Performance reads rows back; a window beyond its limit simply shows no card.
            let performance = if sections.performance {
                crate::performance::performance(&state, &entry, current, chunking, None)
                    .await
                    .ok()
            } else {
                None
            };
            (Some(drift), quality, performance)
        }
        None => (None, None, None),
    };
    let alerts = if sections.alerts {
        let (config, _) = crate::performance::monitoring_config(&state, &entry).await?;
        let series = state.store.alert_series(entry.id).await?;
        Some((config.alerts.len(), series))
    } else {
        None
    };
    Ok(with_csrf(&headers, |csrf| {
        page(
            entry.schema.name().as_str(),
            true,
            Some(csrf),
            html! {
                p.crumbs {
                    a href="/ui" { "Models" } " / " (entry.schema.name())
                    " · " a href={ "/ui/models/" (entry.schema.name()) "/history" } { "configuration history and lineage" }
                }
                h1 { (entry.schema.name()) }
                section.card {
                    h2 { "Traffic" }
                    @match &volume {
                        Some(points) if !points.is_empty() => {
                            (volume_chart(points))
                            p.muted { (points.iter().map(|p| p.rows).sum::<u64>()) " rows in the last 14 days, per hour." }
                        }
                        Some(_) => { p.muted { "No traffic in the last 14 days." } }
                        None => { p.muted { "Your access does not include traffic volume." } }
                    }
                }
                @if let Some((rules, series)) = &alerts {
                    section.card {
                        h2 { "Alerts" }
                        (alerts_section(*rules, series))
                    }
                }
                section.card {
                    h2 { "Drift" }
                    @match &drift {
                        Some(d) => { (drift_section(d)) }
                        None => { p.muted { "Not enough data yet to compare two windows." } }
                    }
                }
                @if let Some(q) = &quality {
                    section.card { h2 { "Data quality" } (crate::report::quality_section(q)) }
                }
                @if let Some(p) = &performance {
                    section.card { h2 { "Performance" } (crate::report::performance_section(p)) }
                }
                section.card {
                    h2 { "Schema" }
                    table {
                        thead { tr { th { "Field" } th { "Role" } th { "Type" } th { "PII" } th { "Masking" } } }
                        tbody {
                            @for c in entry.schema.columns() {
                                tr {
                                    td { (c.name) }
                                    td { (format!("{:?}", c.role).to_lowercase()) }
                                    td { (format!("{:?}", c.value_type).to_lowercase()) }
                                    td { @if c.pii { "yes" } @else { "no" } }
                                    td { (format!("{:?}", c.masking).to_lowercase()) }
                                }
                            }
                        }
                    }
                }
            },
        )
    }))
}

fn reference_text(d: &DriftResponse) -> String {
    match (&d.reference.name, d.reference.start, d.reference.end) {
        (Some(name), _, _) => format!(
            "Reference set \u{201c}{name}\u{201d} ({} rows)",
            d.reference.rows.unwrap_or_default()
        ),
        (None, Some(start), Some(end)) => format!(
            "Reference {} – {}",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%Y-%m-%d %H:%M")
        ),
        _ => "Reference".into(),
    }
}

pub(crate) fn drift_section(d: &DriftResponse) -> Markup {
    html! {
        p {
            (reference_text(d))
            " vs. current " (d.current_start.format("%Y-%m-%d %H:%M")) " – " (d.current_end.format("%Y-%m-%d %H:%M")) " UTC. "
            strong.{ @if d.dataset_drift { "bad" } @else { "good" } } {
                (d.drifted_features) " of " (d.total_features) " features drifted"
                @if d.dataset_drift { " — dataset drift" }
            }
        }
        table.drift {
            thead { tr { th { "Feature" } th { "Kind" } th { "Method" } th.num { "Statistic" } th.num { "Threshold" } th { "Verdict" } th { "Reference vs. current" } } }
            tbody {
                @for f in &d.features {
                    tr {
                        td { (f.feature) }
                        td { (f.kind) }
                        td { (f.method) }
                        td.num { (format!("{:.4}", f.statistic)) @if let Some(p) = f.p_value { br; small.muted { "p = " (format!("{p:.3e}")) } } }
                        td.num { (format!("{:.3}", f.threshold)) br; small.muted { (f.threshold_source) } }
                        td { @if f.drifted { span.bad { "drift" } } @else { span.good { "ok" } } }
                        td { (bins_chart(&f.bins)) }
                    }
                }
                @for s in &d.skipped {
                    tr { td { (s.feature) } td colspan="6" { span.muted { (s.reason) } } }
                }
            }
        }
        @if !d.chunks.is_empty() {
            h3 { "Drift over time" }
            (drift_over_time(d))
        }
    }
}

/// Features × chunks: one cell per chunk, red when the feature drifted in that chunk.
fn drift_over_time(d: &DriftResponse) -> Markup {
    html! {
        table.timeline {
            thead {
                tr {
                    th { "Feature" }
                    @for c in &d.chunks { th.cell title=(c.start.format("%Y-%m-%d %H:00")) { (c.start.format("%d %Hh")) } }
                }
            }
            tbody {
                @for f in &d.features {
                    tr {
                        td { (f.feature) }
                        @for c in &d.chunks {
                            @match c.features.iter().find(|t| t.feature == f.feature) {
                                Some(t) => {
                                    td.cell.{ @if t.drifted { "bad-cell" } @else { "good-cell" } }
                                        title=(format!("{}: {:.4} (threshold {:.3})", c.start.format("%Y-%m-%d %H:00"), t.statistic, t.threshold)) { }
                                }
                                None => { td.cell.empty-cell title="no data" { } }
                            }
                        }
                    }
                }
                tr {
                    td { strong { "dataset" } }
                    @for c in &d.chunks {
                        td.cell.{ @if c.dataset_drift { "bad-cell" } @else { "good-cell" } }
                            title=(format!("{} of {} features drifted, {} rows", c.drifted_features, c.total_features, c.rows)) { }
                    }
                }
            }
        }
    }
}

const CHART_W: f64 = 640.0;
const CHART_H: f64 = 120.0;

fn volume_chart(points: &[VolumePoint]) -> Markup {
    let max = points.iter().map(|p| p.rows).max().unwrap_or(1).max(1) as f64;
    let first = points.first().map(|p| p.hour).unwrap_or_default();
    let last = points.last().map(|p| p.hour).unwrap_or_default();
    let hours = ((last - first).num_hours() + 1).max(1) as f64;
    let bar = (CHART_W / hours).max(1.0);
    html! {
        svg.chart viewBox={ "0 0 " (CHART_W) " " (CHART_H + 14.0) } role="img" aria-label="rows per hour" {
            @for p in points {
                @let x = (p.hour - first).num_hours() as f64 * bar;
                @let h = (p.rows as f64 / max) * CHART_H;
                rect x=(format!("{x:.1}")) y=(format!("{:.1}", CHART_H - h)) width=(format!("{:.1}", (bar - 0.5).max(0.5))) height=(format!("{h:.1}")) fill="#3b6ea5" {
                    title { (p.hour.format("%Y-%m-%d %H:00")) ": " (p.rows) " rows" }
                }
            }
            text x="0" y=(CHART_H + 12.0) font-size="10" fill="#555" { (first.format("%m-%d %H:00")) }
            text x=(CHART_W) y=(CHART_H + 12.0) font-size="10" fill="#555" text-anchor="end" { (last.format("%m-%d %H:00")) " · max " (max) }
        }
    }
}

fn bins_chart(bins: &[custos_proto::DriftBin]) -> Markup {
    let w = 240.0;
    let h = 48.0;
    let n = bins.len().max(1) as f64;
    let slot = w / n;
    let max = bins
        .iter()
        .flat_map(|b| [b.reference, b.current])
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    html! {
        svg.bins viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="reference and current shares per bin" {
            @for (i, b) in bins.iter().enumerate() {
                @let x = i as f64 * slot;
                @let rh = b.reference / max * h;
                @let ch = b.current / max * h;
                rect x=(format!("{:.1}", x + 0.5)) y=(format!("{:.1}", h - rh)) width=(format!("{:.1}", (slot / 2.0 - 0.5).max(0.5))) height=(format!("{rh:.1}")) fill="#9aa5b1" {
                    title { (b.label) ": reference " (format!("{:.1}%", b.reference * 100.0)) }
                }
                rect x=(format!("{:.1}", x + slot / 2.0)) y=(format!("{:.1}", h - ch)) width=(format!("{:.1}", (slot / 2.0 - 0.5).max(0.5))) height=(format!("{ch:.1}")) fill="#d9822b" {
                    title { (b.label) ": current " (format!("{:.1}%", b.current * 100.0)) }
                }
            }
        }
    }
}
