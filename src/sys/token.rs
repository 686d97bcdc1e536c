//! The `auth/token/` routes: create, look up, renew and revoke tokens.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::{Error, SysState};
use crate::auth::{self, NewToken, TokenEntry};
use crate::logical::{handler, Field, Operation, Request, Response, Route};

pub fn routes(state: &Arc<SysState>) -> Vec<Route<Error>> {
    let create_fields = || {
        vec![
            Field::string("id", "Value of the new token (default: random); needs root or sudo, and may not contain '.'."),
            Field::list("policies", "Policies of the new token (default: the creator's); without root or sudo, only the creator's own."),
            Field::map("meta", "Metadata kept with the token and returned by lookups."),
            Field::bool("no_parent", "Create an orphan; needs root or sudo (`create-orphan` does not)."),
            Field::bool("no_default_policy", "Do not attach the `default` policy."),
            Field::bool("renewable", "Whether the token can be renewed.").default(json!(true)),
            Field::duration("ttl", "TTL of the token (default 768h)."),
            Field::duration("lease", "Old name of `ttl`."),
            Field::duration("explicit_max_ttl", "Hard limit on the token's life, renewals included."),
            Field::duration("period", "Make a periodic token: every renewal extends it by this much; needs root or sudo."),
            Field::string("type", "Token type; only `service` is supported."),
            Field::string("display_name", "Name shown in lookups."),
            Field::int("num_uses", "Number of requests the token may make (0 = unlimited)."),
            Field::string("entity_alias", "Accepted for compatibility; ignored."),
        ]
    };
    let mut create = Route::new("create", "Create a token.", CREATE_HELP).op(
        Operation::Write,
        "Create a child token of the calling token.",
        handler(state, create_token),
    );
    create.fields = create_fields();
    let mut orphan = Route::new("create-orphan", "Create an orphan token.", CREATE_HELP).op(
        Operation::Write,
        "Create a token with no parent.",
        handler(state, create_orphan),
    );
    orphan.fields = create_fields();
    vec![
        create,
        orphan,
        Route::new("lookup-self", "Look up the calling token.", LOOKUP_HELP)
            .op(
                Operation::Read,
                "Look up the calling token.",
                handler(state, lookup_self),
            )
            .op(
                Operation::Write,
                "Look up the calling token (POST form).",
                handler(state, lookup_self),
            ),
        Route::new("lookup", "Look up a token by value.", LOOKUP_HELP)
            .field(
                Field::string(
                    "token",
                    "The token to look up (default: the calling token).",
                )
                .sensitive(),
            )
            .op(
                Operation::Read,
                "Look up the calling token (GET form of `lookup` without a token).",
                handler(state, lookup),
            )
            .op(
                Operation::Write,
                "Look up the given token.",
                handler(state, lookup),
            ),
        Route::new(
            "lookup-accessor",
            "Look up a token by accessor.",
            LOOKUP_HELP,
        )
        .field(Field::string(
            "accessor",
            "The accessor of the token to look up.",
        ))
        .op(
            Operation::Write,
            "Look up the token with this accessor.",
            handler(state, lookup_accessor),
        ),
        Route::new("renew-self", "Renew the calling token.", RENEW_HELP)
            .field(Field::duration(
                "increment",
                "Requested new TTL, counted from now.",
            ))
            .op(
                Operation::Write,
                "Renew the calling token.",
                handler(state, renew_self),
            ),
        Route::new("renew", "Renew a token.", RENEW_HELP)
            .field(Field::string("token", "The token to renew.").sensitive())
            .field(Field::duration(
                "increment",
                "Requested new TTL, counted from now.",
            ))
            .op(
                Operation::Write,
                "Renew the given token.",
                handler(state, renew),
            ),
        Route::new("renew-accessor", "Renew a token by accessor.", RENEW_HELP)
            .field(Field::string(
                "accessor",
                "The accessor of the token to renew.",
            ))
            .field(Field::duration(
                "increment",
                "Requested new TTL, counted from now.",
            ))
            .op(
                Operation::Write,
                "Renew the token with this accessor.",
                handler(state, renew_accessor),
            ),
        Route::new("revoke-self", "Revoke the calling token.", REVOKE_HELP).op(
            Operation::Write,
            "Revoke the calling token and its children.",
            handler(state, revoke_self),
        ),
        Route::new("revoke", "Revoke a token.", REVOKE_HELP)
            .field(Field::string("token", "The token to revoke.").sensitive())
            .op(
                Operation::Write,
                "Revoke the given token and its children.",
                handler(state, revoke),
            ),
        Route::new(
            "revoke-accessor",
            "Revoke a token by accessor.",
            REVOKE_HELP,
        )
        .field(Field::string(
            "accessor",
            "The accessor of the token to revoke.",
        ))
        .op(
            Operation::Write,
            "Revoke the token with this accessor.",
            handler(state, revoke_accessor),
        ),
        Route::new(
            "revoke-orphan",
            "Revoke a token, keeping its children.",
            REVOKE_ORPHAN_HELP,
        )
        .field(Field::string("token", "The token to revoke.").sensitive())
        .sudo_op(
            Operation::Write,
            "Revoke the given token; its children become orphans.",
            handler(state, revoke_orphan),
        ),
        Route::new("tidy", "Tidy the token indexes.", TIDY_HELP).sudo_op(
            Operation::Write,
            "Revoke expired tokens and remove index entries that point at no token.",
            handler(state, tidy),
        ),
        Route::new("accessors/?", "List token accessors.", ACCESSORS_HELP).sudo_op(
            Operation::List,
            "List the accessors of every live token.",
            handler(state, list_accessors),
        ),
    ]
}

async fn caller_entry(state: &SysState, req: &Request) -> Result<TokenEntry, Error> {
    let hash = req
        .caller
        .token_hash
        .as_deref()
        .ok_or(auth::Error::PermissionDenied)?;
    Ok(state
        .tokens
        .lookup_hash(hash)
        .await?
        .ok_or(auth::Error::PermissionDenied)?)
}

fn new_token(req: &Request) -> Result<NewToken, Error> {
    let f = &req.fields;
    if let Some(kind) = f.str("type").filter(|t| !t.is_empty() && t != "service") {
        return Err(auth::Error::UnsupportedTokenType(kind).into());
    }
    Ok(NewToken {
        id: f.str("id").filter(|s| !s.is_empty()),
        policies: f.list("policies").unwrap_or_default(),
        meta: f.map("meta"),
        display_name: f.str("display_name").unwrap_or_default(),
        num_uses: f.int("num_uses").unwrap_or(0),
        ttl: f.duration("ttl").or_else(|| f.duration("lease")),
        explicit_max_ttl: f.duration("explicit_max_ttl").unwrap_or(0),
        period: f.duration("period").unwrap_or(0),
        renewable: f.bool("renewable").unwrap_or(true),
        no_parent: f.bool("no_parent").unwrap_or(false),
        no_default_policy: f.bool("no_default_policy").unwrap_or(false),
        // Root or sudo on the create path, as Vault decides it.
        sudo: req.caller.sudo,
        orphan: false,
    })
}

/// The `auth` block Vault clients parse after create and renew.
fn auth_block(token: &str, entry: &TokenEntry, now: i64) -> Value {
    json!({
        "client_token": token,
        "accessor": entry.accessor,
        "policies": entry.policies,
        "token_policies": entry.policies,
        "metadata": entry.meta,
        "lease_duration": entry.ttl(now),
        "renewable": entry.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": entry.orphan,
        "num_uses": entry.num_uses,
        "mfa_requirement": null,
    })
}

fn auth_response(token: &str, entry: &TokenEntry, now: i64) -> Response {
    Response {
        auth: Some(auth_block(token, entry, now)),
        ..Response::default()
    }
}

fn rfc3339(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn lookup_data(id: &str, entry: &TokenEntry, now: i64) -> Response {
    let mut data = json!({
        "id": id,
        "accessor": entry.accessor,
        "policies": entry.policies,
        "path": entry.path,
        "meta": entry.meta,
        "display_name": entry.display_name,
        "num_uses": entry.num_uses,
        "orphan": entry.orphan,
        "creation_time": entry.creation_time,
        "creation_ttl": entry.creation_ttl,
        "expire_time": entry.expire_time.map(rfc3339),
        "ttl": entry.ttl(now),
        "explicit_max_ttl": entry.explicit_max_ttl,
        "entity_id": "",
        "type": "service",
        "issue_time": rfc3339(entry.creation_time),
        "renewable": entry.renewable,
    });
    if let Some(last) = entry.last_renewal {
        data["last_renewal"] = json!(rfc3339(last));
        data["last_renewal_time"] = json!(last);
    }
    if entry.period > 0 {
        data["period"] = json!(entry.period);
    }
    Response::json(data)
}

async fn create_token(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let request = new_token(&req)?;
    issue(&state, &req, request).await
}

/// `create-orphan` needs only its own ACL: no sudo, unlike `no_parent`.
async fn create_orphan(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let mut request = new_token(&req)?;
    request.orphan = true;
    issue(&state, &req, request).await
}

async fn issue(state: &SysState, req: &Request, request: NewToken) -> Result<Response, Error> {
    let parent = caller_entry(state, req).await?;
    let issued = state.tokens.create(Some(&parent), request).await?;
    let mut response = auth_response(&issued.token, &issued.entry, state.tokens.clock.now());
    response.warnings = issued.warnings;
    // Vault names every policy the token holds that is not written (yet).
    for policy in issued.entry.policies.iter().filter(|p| *p != "root") {
        if state.policies.get(policy).await?.is_none() {
            response
                .warnings
                .push(format!("Policy {policy:?} does not exist"));
        }
    }
    Ok(response)
}

async fn lookup_self(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let entry = caller_entry(&state, &req).await?;
    Ok(lookup_data(
        req.caller.token.as_deref().unwrap_or(""),
        &entry,
        state.tokens.clock.now(),
    ))
}

/// The `token` field, required.
fn token_field(req: &Request) -> Result<String, Error> {
    req.fields
        .str("token")
        .filter(|t| !t.is_empty())
        .ok_or(Error::TokenRequired)
}

async fn given_token(state: &SysState, req: &Request) -> Result<(String, TokenEntry), Error> {
    let token = token_field(req)?;
    let entry = state
        .tokens
        .lookup(&token)
        .await?
        .ok_or(auth::Error::BadToken)?;
    Ok((token, entry))
}

async fn lookup(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    // No token given: the caller's, as Vault does.
    if req.fields.str("token").filter(|t| !t.is_empty()).is_none() {
        return lookup_self(state, req).await;
    }
    let (token, entry) = given_token(&state, &req).await?;
    Ok(lookup_data(&token, &entry, state.tokens.clock.now()))
}

async fn accessor_entry(state: &SysState, req: &Request) -> Result<TokenEntry, Error> {
    let accessor = req
        .fields
        .str("accessor")
        .filter(|a| !a.is_empty())
        .ok_or(Error::AccessorRequired)?;
    state
        .tokens
        .lookup_accessor(&accessor)
        .await?
        .ok_or(Error::UnknownAccessor)
}

async fn lookup_accessor(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let entry = accessor_entry(&state, &req).await?;
    Ok(lookup_data("", &entry, state.tokens.clock.now()))
}

async fn renew_self(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let entry = caller_entry(&state, &req).await?;
    renewed(
        &state,
        &req,
        req.caller.token.as_deref().unwrap_or(""),
        &entry,
    )
    .await
}

async fn renew(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let token = token_field(&req)?;
    // Vault answers 400 here, not the 403 of an unknown token elsewhere.
    let entry = state
        .tokens
        .lookup(&token)
        .await?
        .ok_or(Error::TokenNotFound)?;
    renewed(&state, &req, &token, &entry).await
}

async fn renew_accessor(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let entry = accessor_entry(&state, &req).await?;
    // Only the token's hash is stored: the answer cannot carry the token.
    renewed(&state, &req, "", &entry).await
}

/// Renews `entry` by the request's `increment`; the answer carries the
/// capping warnings.
async fn renewed(
    state: &SysState,
    req: &Request,
    token: &str,
    entry: &TokenEntry,
) -> Result<Response, Error> {
    let increment = req.fields.duration("increment").unwrap_or(0);
    let (entry, warnings) = state.tokens.renew(entry, increment).await?;
    let mut response = auth_response(token, &entry, state.tokens.clock.now());
    response.warnings = warnings;
    Ok(response)
}

async fn revoke_self(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let entry = caller_entry(&state, &req).await?;
    state.tokens.revoke(&entry).await?;
    Ok(Response::empty())
}

async fn revoke(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let token = token_field(&req)?;
    // Revoking a token that does not exist succeeds, as in Vault.
    if let Some(entry) = state.tokens.lookup(&token).await? {
        state.tokens.revoke(&entry).await?;
    }
    Ok(Response::empty())
}

async fn revoke_accessor(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    match accessor_entry(&state, &req).await {
        Ok(entry) => {
            state.tokens.revoke(&entry).await?;
            Ok(Response::empty())
        }
        // Vault succeeds with a warning: the token is gone either way.
        Err(Error::UnknownAccessor) => {
            Ok(Response::empty().with_warning("No token found with this accessor"))
        }
        Err(e) => Err(e),
    }
}

async fn revoke_orphan(state: Arc<SysState>, req: Request) -> Result<Response, Error> {
    let token = token_field(&req)?;
    // As with `revoke`, a token that does not exist is not an error.
    if let Some(entry) = state.tokens.lookup(&token).await? {
        state.tokens.revoke_orphan(&entry).await?;
    }
    Ok(Response::empty())
}

async fn list_accessors(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    Ok(Response::list(state.tokens.accessors().await?))
}

async fn tidy(state: Arc<SysState>, _req: Request) -> Result<Response, Error> {
    let revoked = state.tokens.sweep_expired(state.tokens.clock.now()).await?;
    let removed = state.tokens.tidy().await?;
    // Warnings and no data, as Vault answers: vaultrs parses `data` as unit.
    Ok(Response::empty().with_warning(format!(
        "tidy: revoked {revoked} expired tokens and removed {removed} index entries that pointed at no token"
    )))
}

const CREATE_HELP: &str = "Creates a service token. The new token is a child of the calling token (revoked with it) unless it is an orphan (`create-orphan`, or `no_parent` with root or sudo). Its policies default to the creator's; a creator without root or sudo on this path may only give policies it holds, and cannot choose the `id`, a `period` or `no_parent`. `default` is added when the creator has sudo or holds it itself, never with `no_default_policy`. TTL defaults to 768h; `explicit_max_ttl` caps it and renewals; `period` makes a periodic token (root's too). Warnings name policies that do not exist and TTLs that were capped. The response carries the token in `auth.client_token`; it is shown once and stored only as a hash.";
const LOOKUP_HELP: &str = "Returns a token's properties: policies, TTL, expiry, uses left, metadata. An unknown or expired token answers 403; `lookup` without a token looks up the calling token.";
const RENEW_HELP: &str = "Extends a token's TTL from now by `increment` (default: the TTL its last renewal granted, or its creation TTL), capped by `explicit_max_ttl` and the system maximum from its creation, with a warning when capped. A periodic token gets its period whatever is asked. Tokens that never expire cannot be renewed; renewing an unknown token answers 400.";
const REVOKE_HELP: &str = "Revokes a token and every token created from it (except orphans). Revoking a token that does not exist succeeds; an unknown accessor answers 200 with a warning.";
const REVOKE_ORPHAN_HELP: &str = "Revokes a token (and its leases) but not the tokens created from it: they become orphans and live on. Needs sudo.";
const ACCESSORS_HELP: &str = "Lists the accessors of every live token. Needs sudo.";
const TIDY_HELP: &str = "Revokes expired tokens now (the server also does so every second) and removes accessor and parent index entries that point at no token. Answers 200 with the counts in a warning and no data, where Vault answers 202 and tidies in the background. Needs sudo.";
