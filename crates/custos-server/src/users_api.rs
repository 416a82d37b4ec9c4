//! The user administration API: create local users, list them, change their role bindings,
//! disable them.
//!
//! Access (`users:manage`) was decided by the choke point like for every route; what this module
//! adds are the rules the route table cannot express: only the bootstrap secret or an `admin`
//! user may bind the `admin` role or change a user who holds it, so a token that can manage users
//! still cannot mint or remove administrators; and nobody changes their own roles. Every change
//! commits with its audit record, which names the user's id, name and roles and never the
//! password; password hashes never leave the store through this API.

use crate::auth::{Authorized, audit_for};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::local_users::{self, valid_name};
use crate::passwords::check_policy;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use custos_core::roles::MAX_BINDINGS;
use custos_core::{Action, BuiltinRole, Principal, RoleBinding};
use custos_store::{NewUser, UserRow};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use zeroize::Zeroizing;

/// The OpenAPI description of these routes, merged into the API's.
#[derive(OpenApi)]
#[openapi(
    paths(create_user, list_users, put_user_roles, disable_user),
    components(schemas(
        RoleBindingBody,
        CreateUserRequest,
        UserRolesRequest,
        UserInfo,
        UserList
    ))
)]
pub struct UsersDoc;

/// A role binding on the wire.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBindingBody {
    /// `admin`, `sre`, `data-scientist`, `auditor` or `analyst`.
    pub role: String,
    /// A model name, or `*` for every model.
    pub model: String,
}

/// `POST /api/v1/users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// 3–64 ASCII letters, digits, `.`, `_`, `-`, `@`; unique regardless of case.
    pub name: String,
    /// 12–256 characters, not a common password, not containing the name.
    pub password: String,
    /// The roles to bind.
    pub roles: Vec<RoleBindingBody>,
}

/// `PUT /api/v1/users/{id}/roles`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRolesRequest {
    /// The complete new list of role bindings (an empty list removes all access).
    pub roles: Vec<RoleBindingBody>,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role bindings.
    pub roles: Vec<RoleBindingBody>,
    /// Who created the user.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When the user was disabled, if it was.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Until when sign-in is locked after wrong passwords, if it is now.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the user last signed in.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/users`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserList {
    /// Every user, oldest first.
    pub users: Vec<UserInfo>,
}

fn wire(binding: &RoleBinding) -> RoleBindingBody {
    RoleBindingBody {
        role: binding.role.as_str().to_owned(),
        model: match &binding.model {
            custos_core::ModelScope::Any => "*".to_owned(),
            custos_core::ModelScope::Named(name) => name.to_string(),
        },
    }
}

fn info(user: &UserRow, now: DateTime<Utc>) -> Result<UserInfo, ApiError> {
    Ok(UserInfo {
        id: user.id.clone(),
        name: user.name.clone(),
        roles: local_users::bindings(user)?.iter().map(wire).collect(),
        created_by: user.created_by.clone(),
        created_at: user.created_at,
        disabled_at: user.disabled_at,
        locked_until: user.locked_until.filter(|until| *until > now),
        last_sign_in_at: user.last_sign_in_at,
    })
}

fn body(raw: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    raw.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::bad_request("could not read the request body")
        }
    })
}

/// Parses a JSON body without echoing it: a serde message could quote a submitted value, and
/// this body carries a password.
fn parse<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "a field is missing, unknown or of the wrong type",
            _ => "not valid JSON",
        };
        ApiError::bad_request(format!("invalid body: {what}"))
    })
}

/// Checks and de-duplicates requested bindings.
fn bindings(requested: &[RoleBindingBody]) -> Result<Vec<RoleBinding>, ApiError> {
    if requested.len() > MAX_BINDINGS {
        return Err(ApiError::bad_request(format!(
            "a user may hold at most {MAX_BINDINGS} role bindings"
        )));
    }
    let mut out: Vec<RoleBinding> = Vec::new();
    for r in requested {
        let binding = RoleBinding::parse(&r.role, &r.model)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !out.contains(&binding) {
            out.push(binding);
        }
    }
    Ok(out)
}

fn holds_admin(bindings: &[RoleBinding]) -> bool {
    bindings.iter().any(|b| b.role == BuiltinRole::Admin)
}

/// Whether the caller may grant or take away the `admin` role: the bootstrap secret, or a person
/// signed in as an administrator. Tokens are excluded even with `users:manage`, so a leaked
/// automation token cannot create the one role that hands out every other.
fn may_touch_admins(who: &Authorized) -> bool {
    match &who.principal {
        Principal::Bootstrap => true,
        Principal::User { .. } => who.principal.allows(Action::UsersManage, None),
        Principal::Token { .. } | Principal::Service { .. } => false,
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ApiError::not_found("user"));
    }
    Ok(())
}

/// Creates a local user.
#[utoipa::path(post, path = "/api/v1/users", request_body = CreateUserRequest,
    responses((status = 201, body = UserInfo), (status = 400, body = custos_proto::ErrorBody),
        (status = 409, body = custos_proto::ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    let raw = Zeroizing::new(body(raw, state.config.limits.max_body_bytes)?.to_vec());
    let request: CreateUserRequest = parse(&raw)?;
    let password = Zeroizing::new(request.password);
    let name = request.name.trim();
    if !valid_name(name) {
        return Err(ApiError::bad_request(
            "name must be 3–64 ASCII letters, digits, '.', '_', '-' or '@', starting with a \
             letter or digit",
        ));
    }
    check_policy(name, &password).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let bindings = bindings(&request.roles)?;
    if holds_admin(&bindings) && !may_touch_admins(&who) {
        return Err(ApiError::forbidden());
    }
    if state.store.user_by_name(name).await?.is_some() {
        // Checked before hashing so a taken name costs no hash; the store's unique index
        // still decides a race.
        return Err(ApiError::conflict("a user with this name already exists"));
    }
    let password_hash = state
        .passwords
        .hash(&password)
        .await
        .map_err(ApiError::internal)?;
    let id_hex = crate::context::random_id();
    let id = format!("usr_{}", id_hex.get(..16).unwrap_or(&id_hex));
    let roles: Vec<RoleBindingBody> = bindings.iter().map(wire).collect();
    let new = NewUser {
        id: id.clone(),
        name: name.to_owned(),
        password_hash,
        bindings_json: serde_json::to_string(&bindings).map_err(ApiError::internal)?,
        created_by: who.principal.actor_id(),
    };
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "user.create",
        format!("user/{id}"),
        serde_json::json!({ "user_id": id, "name": name, "roles": roles }),
    );
    let now = state.clock.now();
    let user = state.store.create_user(&new, now, &audit).await?;
    Ok((StatusCode::CREATED, Json(info(&user, now)?)))
}

/// Lists every local user (without password hashes).
#[utoipa::path(get, path = "/api/v1/users", responses((status = 200, body = UserList)))]
pub async fn list_users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let now = state.clock.now();
    let users = state
        .store
        .list_users()
        .await?
        .iter()
        .map(|u| info(u, now))
        .collect::<Result<_, _>>()?;
    Ok(Json(UserList { users }))
}

/// Replaces a user's role bindings; the user's open web sessions end.
#[utoipa::path(put, path = "/api/v1/users/{id}/roles", params(("id" = String, Path)),
    request_body = UserRolesRequest,
    responses((status = 200, body = UserInfo), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn put_user_roles(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<UserInfo>, ApiError> {
    check_id(&id)?;
    // Nobody changes their own roles: an administrator who wants data access needs a second
    // person to grant it, which is the point of keeping the duties apart.
    if matches!(&who.principal, Principal::User { id: own, .. } if *own == id) {
        return Err(ApiError::forbidden());
    }
    let raw = body(raw, state.config.limits.max_body_bytes)?;
    let request: UserRolesRequest = parse(&raw)?;
    let bindings = bindings(&request.roles)?;
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(|| ApiError::not_found("user"))?;
    let before = local_users::bindings(&user)?;
    if (holds_admin(&bindings) || holds_admin(&before)) && !may_touch_admins(&who) {
        return Err(ApiError::forbidden());
    }
    let roles: Vec<RoleBindingBody> = bindings.iter().map(wire).collect();
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "user.roles",
        format!("user/{id}"),
        serde_json::json!({
            "user_id": id,
            "name": user.name,
            "roles": roles,
            "previous_roles": before.iter().map(wire).collect::<Vec<_>>(),
        }),
    );
    let now = state.clock.now();
    let json = serde_json::to_string(&bindings).map_err(ApiError::internal)?;
    if !state
        .store
        .set_user_bindings(&id, &json, now, &audit)
        .await?
    {
        return Err(ApiError::not_found("user"));
    }
    state.sessions.end_all_for(&format!("user:{id}"));
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(info(&user, now)?))
}

/// Disables a user for good (users are never deleted: audit records name them); the user's open
/// web sessions end.
#[utoipa::path(delete, path = "/api/v1/users/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = custos_proto::ErrorBody)))]
pub async fn disable_user(
    State(state): State<AppState>,
    Extension(who): Extension<Authorized>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .filter(|u| u.disabled_at.is_none())
        .ok_or_else(|| ApiError::not_found("user"))?;
    let roles = local_users::bindings(&user)?;
    if holds_admin(&roles) && !may_touch_admins(&who) {
        return Err(ApiError::forbidden());
    }
    let audit = audit_for(
        &state,
        &ctx,
        &who,
        "user.disable",
        format!("user/{id}"),
        serde_json::json!({
            "user_id": id,
            "name": user.name,
            "roles": roles.iter().map(wire).collect::<Vec<_>>(),
        }),
    );
    if !state
        .store
        .disable_user(&id, state.clock.now(), &audit)
        .await?
    {
        return Err(ApiError::not_found("user"));
    }
    state.sessions.end_all_for(&format!("user:{id}"));
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_do_not_echo_the_body() {
        let body = br#"{"name": "ada", "password": "hunter2-but-longer", "roles": [{"role": 7}]}"#;
        let err = parse::<CreateUserRequest>(body).err().unwrap();
        let text = format!("{err:?}");
        assert!(!text.contains("hunter2"), "{text}");
        let err = parse::<CreateUserRequest>(br#"{"name": "ada", "password": "hunter2"#)
            .err()
            .unwrap();
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn bindings_are_checked_and_deduplicated() {
        let b = |role: &str, model: &str| RoleBindingBody {
            role: role.into(),
            model: model.into(),
        };
        let out = bindings(&[b("analyst", "*"), b("analyst", "*"), b("sre", "fraud-v3")]).unwrap();
        assert_eq!(out.len(), 2);
        assert!(bindings(&[b("admin", "fraud-v3")]).is_err());
        assert!(bindings(&[b("root", "*")]).is_err());
        assert!(bindings(&vec![b("analyst", "*"); MAX_BINDINGS + 1]).is_err());
    }
}
