//! `custos demo`: the newcomer's first run. It starts a real server on the embedded store,
//! registers a demo model through the public API with the bootstrap secret, creates a token
//! scoped to that one model's ingestion (as a model server would get), and sends synthetic
//! traffic in which some features drift partway through. Everything goes over HTTP, exactly as a
//! real client would, so what the demo shows is what production does.

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, DurationRound, Utc};
use custos_core::SystemClock;
use custos_server::App;
use custos_server::config::Config;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;

const MODEL: &str = "demo-fraud";
const ROWS_PER_HOUR: usize = 400;
const BATCH_ROWS: usize = 1_000;
/// Labelled training rows uploaded as the demo model's reference set.
const REFERENCE_ROWS: usize = 10_000;

/// A small deterministic generator (SplitMix64): the demo needs plausible data, not secrecy.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn pick<'a>(&mut self, items: &[(&'a str, f64)]) -> &'a str {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.uniform() * total;
        for (item, weight) in items {
            if x < *weight {
                return item;
            }
            x -= weight;
        }
        items.last().map_or("", |(i, _)| i)
    }
}

fn model_spec() -> Value {
    json!({
        "name": MODEL,
        "description": "Card-fraud classifier (synthetic demo traffic)",
        "id_field": "event_id",
        "timestamp_field": "ts",
        "features": [
            {"name": "amount", "type": "numeric"},
            {"name": "account_age_days", "type": "numeric"},
            {"name": "txn_count_24h", "type": "numeric"},
            {"name": "country", "type": "categorical"},
            {"name": "device", "type": "categorical"},
            {"name": "merchant_category", "type": "categorical"},
            {"name": "is_returning", "type": "boolean"},
            {"name": "customer_email", "type": "categorical", "pii": true, "masking": "hmac"},
            {"name": "support_note", "type": "text", "pii": true, "masking": "drop"}
        ],
        "prediction": {"name": "fraud_score", "type": "binary_score"}
    })
}

/// One synthetic event. After `drift_from`, amounts rise, the country mix shifts towards new
/// markets and mobile devices take over; the other features stay put.
fn event(rng: &mut Rng, id: &str, at: DateTime<Utc>, drifted: bool) -> (Value, u8) {
    let amount_scale = if drifted { 1.9 } else { 1.0 };
    let amount = ((3.4 + 0.9 * rng.normal()).exp() * amount_scale * 100.0).round() / 100.0;
    let age = (rng.uniform() * 2_000.0).round();
    let txns = (rng.normal() * 2.0 + 4.0).max(0.0).round();
    let countries: &[(&str, f64)] = if drifted {
        &[
            ("DE", 0.2),
            ("FR", 0.15),
            ("US", 0.2),
            ("BR", 0.2),
            ("NG", 0.15),
            ("IN", 0.1),
        ]
    } else {
        &[
            ("DE", 0.35),
            ("FR", 0.25),
            ("US", 0.3),
            ("BR", 0.05),
            ("NG", 0.02),
            ("IN", 0.03),
        ]
    };
    let devices: &[(&str, f64)] = if drifted {
        &[("android", 0.6), ("ios", 0.3), ("web", 0.1)]
    } else {
        &[("android", 0.3), ("ios", 0.3), ("web", 0.4)]
    };
    let merchants = &[
        ("grocery", 0.3),
        ("travel", 0.1),
        ("electronics", 0.2),
        ("fashion", 0.25),
        ("gaming", 0.15),
    ];
    let country = rng.pick(countries);
    let logit = -4.0 + 0.012 * amount.min(400.0) + if country == "NG" { 1.0 } else { 0.0 }
        - age / 1_500.0
        + 0.3 * rng.normal();
    let score = 1.0 / (1.0 + (-logit).exp());
    let label = u8::from(rng.uniform() < score);
    let customer = rng.next_u64() % 5_000;
    let row = json!({
        "event_id": id,
        "ts": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "amount": amount,
        "account_age_days": age,
        "txn_count_24h": txns,
        "country": country,
        "device": rng.pick(devices),
        "merchant_category": rng.pick(merchants),
        "is_returning": rng.uniform() < 0.7,
        "customer_email": format!("customer{customer}@example.com"),
        "support_note": if rng.uniform() < 0.05 { Value::from(format!("customer {customer} called about a charge")) } else { Value::Null },
        "fraud_score": (score * 10_000.0).round() / 10_000.0,
    });
    (row, label)
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn post(&self, path: &str, body: Vec<u8>, ndjson: bool) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(
                "content-type",
                if ndjson {
                    "application/x-ndjson"
                } else {
                    "application/json"
                },
            )
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

async fn send_rows(client: &Client, rows: &[Value]) -> anyhow::Result<()> {
    let mut body = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut body, row)?;
        body.push(b'\n');
    }
    let (status, answer) = client
        .post(&format!("/api/v1/models/{MODEL}/predictions"), body, true)
        .await?;
    if status != 200 {
        bail!("ingest answered {status}: {answer}");
    }
    Ok(())
}

async fn send_labels(client: &Client, labels: &[(String, u8)]) -> anyhow::Result<()> {
    let rows: Vec<Value> = labels
        .iter()
        .map(|(id, label)| json!({"event_id": id, "label": label}))
        .collect();
    let (status, answer) = client
        .post(
            &format!("/api/v1/models/{MODEL}/labels"),
            serde_json::to_vec(&rows)?,
            false,
        )
        .await?;
    if status != 200 {
        bail!("labels answered {status}: {answer}");
    }
    Ok(())
}

/// Runs the demo until `shutdown` resolves (or, without live traffic, until history is sent).
pub async fn run(
    config: Config,
    history_hours: u32,
    live: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let data_dir = config.server.data_dir.clone();
    let app = App::build(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stop_rx.await;
    }));

    let token_file = data_dir.join(custos_server::bootstrap::BOOTSTRAP_FILE);
    let admin_secret = std::fs::read_to_string(&token_file)
        .with_context(|| {
            format!(
                "the demo signs in with the bootstrap secret in {}, which is missing; \
                 use a fresh --data-dir",
                token_file.display()
            )
        })?
        .trim()
        .to_owned();
    let base = format!("http://{listen}");
    let http = reqwest::Client::builder().build()?;
    let admin = Client {
        http: http.clone(),
        base: base.clone(),
        token: admin_secret,
    };
    let (status, answer) = admin
        .post("/api/v1/models", serde_json::to_vec(&model_spec())?, false)
        .await?;
    match status {
        201 => eprintln!("registered model '{MODEL}'"),
        409 => eprintln!("model '{MODEL}' already registered; adding traffic"),
        401 => bail!("the bootstrap secret was not accepted: {answer}"),
        other => bail!("registering the demo model failed ({other}): {answer}"),
    }
    // Training data as a reference set, with its labels: drift compares with it, and CBPE
    // calibrates on it to estimate performance before labels arrive.
    let mut reference_rng = Rng(0x5EED_7EA1_0FD3_E001);
    let mut reference = Vec::new();
    for i in 0..REFERENCE_ROWS {
        let (mut row, label) = event(&mut reference_rng, &format!("train-{i}"), Utc::now(), false);
        if let Some(fields) = row.as_object_mut() {
            fields.insert("label".into(), json!(label));
        }
        serde_json::to_writer(&mut reference, &row)?;
        reference.push(b'\n');
    }
    let (status, answer) = admin
        .post(
            &format!("/api/v1/models/{MODEL}/reference?label_field=label&name=training-data"),
            reference,
            true,
        )
        .await?;
    if status != 201 {
        bail!("uploading the demo reference failed ({status}): {answer}");
    }
    eprintln!("uploaded a reference set of {REFERENCE_ROWS} labelled training rows");
    // Customer pseudonyms are identifiers: their mix is meant to change, so drift leaves them out.
    // Alert rules too, so the model page shows them firing on the drifting features and the
    // evaluator's history fills (no channel: notifications need one of the operator's).
    let monitoring = json!({
        "drift": {"exclude": ["customer_email"]},
        "alerts": [
            {"name": "feature-drift", "metric": "drift.detected", "condition": "above",
             "threshold": 0.5, "for": "1m", "severity": "warning",
             "annotations": {"summary": "{{ feature }} drifted on {{ model }}"}},
            {"name": "silent", "metric": "freshness.silence_minutes", "condition": "above",
             "threshold": 30, "severity": "critical"}
        ]
    });
    let response = admin
        .http
        .put(format!("{base}/api/v1/models/{MODEL}/monitoring"))
        .bearer_auth(&admin.token)
        .json(&monitoring)
        .send()
        .await
        .context("PUT monitoring")?;
    if !response.status().is_success() {
        bail!(
            "configuring the demo model's monitoring failed ({})",
            response.status()
        );
    }
    let request = json!({
        "description": "demo model server",
        "scopes": [
            {"action": "predictions:write", "model": MODEL},
            {"action": "labels:write", "model": MODEL}
        ],
        "expires_in_days": 1
    });
    let (status, answer) = admin
        .post("/api/v1/tokens", serde_json::to_vec(&request)?, false)
        .await?;
    if status != 201 {
        bail!("creating the ingest token failed ({status}): {answer}");
    }
    let ingest_token = answer
        .get("secret")
        .and_then(Value::as_str)
        .context("the token answer has no secret")?
        .to_owned();
    let client = Client {
        http,
        base: base.clone(),
        token: ingest_token,
    };

    let now = Utc::now();
    let start = now.duration_trunc(Duration::hours(1)).unwrap_or(now)
        - Duration::hours(i64::from(history_hours));
    let drift_from = start + Duration::hours(i64::from(history_hours) * 2 / 3);
    let mut rng = Rng(now.timestamp_micros().unsigned_abs());
    let run_id = format!("{:x}", rng.next_u64() & 0xffff_ffff);
    let mut rows = Vec::with_capacity(BATCH_ROWS);
    let mut labels = Vec::new();
    let mut sent = 0usize;
    for hour in 0..history_hours {
        let hour_start = start + Duration::hours(i64::from(hour));
        for i in 0..ROWS_PER_HOUR {
            let at =
                hour_start + Duration::milliseconds((i as i64 * 3_600_000) / ROWS_PER_HOUR as i64);
            let id = format!("{run_id}-{hour}-{i}");
            let (row, label) = event(&mut rng, &id, at, at >= drift_from);
            if rng.uniform() < 0.3 {
                labels.push((id, label));
            }
            rows.push(row);
            if rows.len() == BATCH_ROWS {
                send_rows(&client, &rows).await?;
                sent += rows.len();
                rows.clear();
            }
        }
    }
    if !rows.is_empty() {
        send_rows(&client, &rows).await?;
        sent += rows.len();
        rows.clear();
    }
    for chunk in labels.chunks(BATCH_ROWS) {
        send_labels(&client, chunk).await?;
    }
    eprintln!(
        "sent {sent} predictions over {history_hours} hours (drift from {}) and {} labels",
        drift_from.format("%Y-%m-%d %H:%M UTC"),
        labels.len()
    );
    eprintln!();
    eprintln!("Custos demo is running: http://{listen}/ui");
    eprintln!(
        "Sign in with the one-time administrator secret:  cat {}",
        token_file.display()
    );
    eprintln!(
        "Drift as JSON: GET {base}/api/v1/models/{MODEL}/drift?reference_start=…&reference_end=…&current_start=…&current_end=…"
    );

    if live {
        eprintln!("Feeding live traffic every 2 s; Ctrl-C to stop.");
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        tokio::pin!(shutdown);
        let mut n = 0u64;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    let at = Utc::now();
                    let batch: Vec<Value> = (0..20)
                        .map(|i| event(&mut rng, &format!("{run_id}-live-{n}-{i}"), at, true).0)
                        .collect();
                    n += 1;
                    if let Err(e) = send_rows(&client, &batch).await {
                        eprintln!("live traffic: {e:#}");
                    }
                }
            }
        }
    }
    let _ = stop_tx.send(());
    server.await.context("server task")??;
    Ok(())
}
