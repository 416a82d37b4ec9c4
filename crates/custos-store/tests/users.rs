//! Local users, conformance-style: every test body runs on a fresh SQLite file and on a fresh
//! PostgreSQL database and must pass unchanged on both (harness as in `tests/conformance.rs`).
//! Run one backend with `cargo test -p custos-store --test users sqlite::` (or `postgres::`).

// Test code: a failed unwrap is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use custos_core::{ActorType, AuditEvent, Outcome};
use custos_store::testing::TestStore;
use custos_store::{NewUser, StoreError};
use serde_json::json;
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::sync::Arc;

/// Declares each named `async fn(&TestStore)` as `sqlite::<name>` and `postgres::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = custos_store::testing::TestStore::sqlite()
                        .await
                        .expect("a fresh SQLite store");
                    super::$name(&db).await;
                    db.cleanup().await.expect("SQLite cleanup");
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = custos_store::testing::TestStore::postgres()
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    let Some(db) = db else {
                        eprintln!("PostgreSQL run skipped: CUSTOS_TEST_SKIP_POSTGRES=1");
                        return;
                    };
                    super::$name(&db).await;
                    db.cleanup().await.expect("PostgreSQL cleanup");
                }
            )*
        }
    };
}

conformance!(
    users_create_find_list_and_names_are_unique_in_any_case,
    users_bindings_change_and_disable_only_live_users,
    sign_in_failures_lock_and_success_clears,
    concurrent_failures_lock_exactly_once,
    user_writes_fail_closed,
);

// ---- fixtures ----

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

fn event(action: &str, resource: &str) -> AuditEvent {
    AuditEvent {
        time: t0(),
        actor: "bootstrap".into(),
        actor_type: ActorType::Bootstrap,
        source_ip: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: Some("req-1".into()),
        action: action.into(),
        resource: resource.into(),
        outcome: Outcome::Success,
        status: None,
        detail: json!({"why": "users conformance"}),
    }
}

const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

fn new_user(id: &str, name: &str) -> NewUser {
    NewUser {
        id: id.into(),
        name: name.into(),
        password_hash: HASH.into(),
        bindings_json: r#"[{"role":"auditor","model":"*"}]"#.into(),
        created_by: "bootstrap".into(),
    }
}

async fn audit_count(db: &TestStore) -> usize {
    db.audit_entries(0, 1_000).await.unwrap().len()
}

async fn raw(db: &TestStore, sql: &'static str) -> Result<(), sqlx::Error> {
    match db.backend_name() {
        "sqlite" => {
            let mut conn = SqliteConnection::connect(db.url()).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        }
        _ => {
            let mut conn = PgConnection::connect(db.url()).await?;
            sqlx::raw_sql(sql).execute(&mut conn).await?;
            conn.close().await
        }
    }
}

// ---- tests ----

async fn users_create_find_list_and_names_are_unique_in_any_case(db: &TestStore) {
    let created = db
        .create_user(
            &new_user("u_1", "Ada"),
            t0(),
            &event("user.create", "user/u_1"),
        )
        .await
        .unwrap();
    assert_eq!(created.name, "Ada");
    assert_eq!(created.created_at, t0());
    assert_eq!(created.password_changed_at, t0());
    assert_eq!(created.failed_count, 0);
    assert!(created.disabled_at.is_none() && created.locked_until.is_none());
    assert_eq!(
        audit_count(db).await,
        1,
        "the audit entry commits with the user"
    );

    let found = db.user_by_name("ADA").await.unwrap().unwrap();
    assert_eq!(
        found, created,
        "lookup ignores case and returns what was stored"
    );
    assert_eq!(db.user_by_id("u_1").await.unwrap().unwrap(), created);
    assert!(db.user_by_name("bob").await.unwrap().is_none());
    assert!(db.user_by_id("u_2").await.unwrap().is_none());

    let err = db
        .create_user(
            &new_user("u_2", "aDA"),
            t0(),
            &event("user.create", "user/u_2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        audit_count(db).await,
        1,
        "a refused create leaves no audit entry"
    );

    db.create_user(
        &new_user("u_3", "grace"),
        t0() + Duration::seconds(1),
        &event("user.create", "user/u_3"),
    )
    .await
    .unwrap();
    let names: Vec<String> = db
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["Ada", "grace"]);
    // The hash is kept out of Debug output.
    assert!(!format!("{created:?}").contains("argon2id"));
    db.verify_audit_chain().await.unwrap();
}

async fn users_bindings_change_and_disable_only_live_users(db: &TestStore) {
    db.create_user(
        &new_user("u_1", "ada"),
        t0(),
        &event("user.create", "user/u_1"),
    )
    .await
    .unwrap();
    let later = t0() + Duration::minutes(5);
    let bindings = r#"[{"role":"sre","model":"*"}]"#;
    assert!(
        db.set_user_bindings("u_1", bindings, later, &event("user.roles", "user/u_1"))
            .await
            .unwrap()
    );
    let user = db.user_by_id("u_1").await.unwrap().unwrap();
    assert_eq!(user.bindings_json, bindings);
    assert_eq!(user.updated_at, later);
    assert!(
        !db.set_user_bindings("nope", bindings, later, &event("user.roles", "user/nope"))
            .await
            .unwrap()
    );
    assert_eq!(audit_count(db).await, 2);

    let off = t0() + Duration::minutes(9);
    assert!(
        db.disable_user("u_1", off, &event("user.disable", "user/u_1"))
            .await
            .unwrap()
    );
    assert!(
        !db.disable_user("u_1", off, &event("user.disable", "user/u_1"))
            .await
            .unwrap(),
        "already disabled"
    );
    assert!(
        !db.disable_user("nope", off, &event("user.disable", "user/nope"))
            .await
            .unwrap()
    );
    assert!(
        !db.set_user_bindings("u_1", "[]", off, &event("user.roles", "user/u_1"))
            .await
            .unwrap(),
        "a disabled user's roles stay as they were"
    );
    let user = db.user_by_id("u_1").await.unwrap().unwrap();
    assert_eq!(user.disabled_at, Some(off));
    assert_eq!(user.bindings_json, bindings);
    assert_eq!(
        audit_count(db).await,
        3,
        "only changes that happened are audited"
    );
    // A disabled user keeps its name: it cannot be reused by someone else.
    let err = db
        .create_user(
            &new_user("u_2", "Ada"),
            off,
            &event("user.create", "user/u_2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
}

async fn sign_in_failures_lock_and_success_clears(db: &TestStore) {
    db.create_user(
        &new_user("u_1", "ada"),
        t0(),
        &event("user.create", "user/u_1"),
    )
    .await
    .unwrap();
    let lock_for = Duration::minutes(15);
    let mut now = t0();
    for n in 1..=2u32 {
        now += Duration::seconds(1);
        assert_eq!(
            db.record_sign_in_failure("u_1", now, 3, lock_for)
                .await
                .unwrap(),
            None
        );
        assert_eq!(db.user_by_id("u_1").await.unwrap().unwrap().failed_count, n);
    }
    now += Duration::seconds(1);
    let until = db
        .record_sign_in_failure("u_1", now, 3, lock_for)
        .await
        .unwrap();
    assert_eq!(until, Some(now + lock_for), "the third failure locks");
    let user = db.user_by_id("u_1").await.unwrap().unwrap();
    assert_eq!(user.failed_count, 0, "the count starts again after a lock");
    assert!(user.locked_at(now) && user.locked_at(now + Duration::minutes(14)));
    assert!(!user.locked_at(now + lock_for));

    // After the lock has run out, one failure reports no lock again.
    let after = now + lock_for + Duration::seconds(1);
    assert_eq!(
        db.record_sign_in_failure("u_1", after, 3, lock_for)
            .await
            .unwrap(),
        None
    );
    db.record_sign_in_success("u_1", after).await.unwrap();
    let user = db.user_by_id("u_1").await.unwrap().unwrap();
    assert_eq!(user.failed_count, 0);
    assert_eq!(user.locked_until, None);
    assert_eq!(user.last_sign_in_at, Some(after));

    assert!(matches!(
        db.record_sign_in_failure("nope", after, 3, lock_for).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        db.record_sign_in_success("nope", after).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        db.record_sign_in_failure("u_1", after, 0, lock_for)
            .await
            .is_err()
    );
    assert!(
        db.record_sign_in_failure("u_1", after, 3, Duration::zero())
            .await
            .is_err()
    );
    assert_eq!(
        audit_count(db).await,
        1,
        "sign-in bookkeeping is not audited here"
    );
}

async fn concurrent_failures_lock_exactly_once(db: &TestStore) {
    db.create_user(
        &new_user("u_1", "ada"),
        t0(),
        &event("user.create", "user/u_1"),
    )
    .await
    .unwrap();
    let store = Arc::new((**db).clone());
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .record_sign_in_failure("u_1", t0(), 10, Duration::minutes(15))
                .await
                .unwrap()
        }));
    }
    let mut locked = 0;
    for task in tasks {
        if task.await.unwrap().is_some() {
            locked += 1;
        }
    }
    // Whatever the interleaving, exactly one failure is the tenth, and only it locks.
    assert_eq!(locked, 1, "no failure was lost or counted twice");
    let user = db.user_by_id("u_1").await.unwrap().unwrap();
    assert_eq!(user.failed_count, 0);
    assert_eq!(user.locked_until, Some(t0() + Duration::minutes(15)));
}

async fn user_writes_fail_closed(db: &TestStore) {
    db.create_user(
        &new_user("u_1", "ada"),
        t0(),
        &event("user.create", "user/u_1"),
    )
    .await
    .unwrap();
    match db.backend_name() {
        "sqlite" => raw(
            db,
            "CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END",
        )
        .await
        .unwrap(),
        _ => raw(
            db,
            "CREATE FUNCTION audit_blocked() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END; $$; \
             CREATE TRIGGER audit_log_blocked BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_blocked()",
        )
        .await
        .unwrap(),
    }
    let later = t0() + Duration::minutes(1);
    assert!(
        db.create_user(
            &new_user("u_2", "bob"),
            later,
            &event("user.create", "user/u_2")
        )
        .await
        .is_err()
    );
    assert!(db.user_by_name("bob").await.unwrap().is_none());
    assert!(
        db.set_user_bindings("u_1", "[]", later, &event("user.roles", "user/u_1"))
            .await
            .is_err()
    );
    assert!(
        db.disable_user("u_1", later, &event("user.disable", "user/u_1"))
            .await
            .is_err()
    );
    let user = db.user_by_id("u_1").await.unwrap().unwrap();
    assert_eq!(user.bindings_json, r#"[{"role":"auditor","model":"*"}]"#);
    assert_eq!(user.disabled_at, None);
}
