//! Bearer tokens, roles and a request budget per token.
//!
//! Tokens come from `[[api.tokens]]`: a name, a role (`read` ⊂ `operate` ⊂ `admin`) and the
//! token as its SHA-256 digest (`sha256 = "<hex>"`, preferred: the config then holds
//! nothing a caller could use), in plain text (`token = "…"`, allowed with a warning at
//! start) or in a file of its own (`token_file`). A presented token is hashed and compared
//! with every known digest in constant time; neither the token nor its digest is ever
//! logged or echoed.
//!
//! Which role a route needs is written once, in its OpenAPI `security` requirement
//! (`("bearer" = ["operate"])`, or `()` for public routes): [`Guard`] reads the generated
//! document, so what is documented is what is enforced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rfidgw_sip2::Secret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::error::ApiError;

/// What a token may do. Each role includes the ones before it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every `GET`: status, events, the live stream, listings, the bridge's lookups.
    Read,
    /// Also staff and kiosk actions: acknowledge, silence, kiosk sessions, sort plans,
    /// worklist resolution, device actions, bridge transactions.
    Operate,
    /// Also what concerns the gateway's own configuration (the token list).
    Admin,
}

impl Role {
    /// The role's name in the config and the OpenAPI document.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Admin => "admin",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Self::Read, Self::Operate, Self::Admin]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// One `[[api.tokens]]` entry. Exactly one of `sha256`, `token` and `token_file`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown in the journal as who acted; never the token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The token's SHA-256 digest, 64 hex digits (`rfidgw token hash`).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The token in plain text (allowed; a warning at start prefers `sha256`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file holding the token (trimmed), readable by the daemon (and by the CLI, which
    /// can use it with `--config`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// This token's own budget, instead of `[api.rate_limit]`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// A request budget: a token bucket of `burst` requests refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second in the long run.
    pub per_second: f64,
    /// Requests that may come at once.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 40,
        }
    }
}

impl RateLimitConfig {
    fn validate(&self, key: &str) -> Result<(), (String, String)> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) || self.burst == 0 {
            return Err((
                key.to_owned(),
                "per_second must be above 0 and burst at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The key and problem of the first unusable `[[api.tokens]]` entry or `[api.rate_limit]`.
pub fn validate(
    tokens: &[TokenConfig],
    rate_limit: &RateLimitConfig,
) -> Result<(), (String, String)> {
    rate_limit.validate("api.rate_limit")?;
    let mut names = std::collections::HashSet::new();
    for (n, token) in tokens.iter().enumerate() {
        let key = format!("api.tokens[{n}]");
        if token.name.trim().is_empty() || !names.insert(token.name.as_str()) {
            return Err((
                format!("{key}.name"),
                format!("`{}`: every token needs a name of its own", token.name),
            ));
        }
        let given = [
            token.sha256.is_some(),
            token.token.is_some(),
            token.token_file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err((
                key,
                "give exactly one of sha256 (preferred; `rfidgw token hash`), token or token_file"
                    .into(),
            ));
        }
        if let Some(hex) = &token.sha256
            && parse_digest(hex).is_none()
        {
            return Err((
                format!("{key}.sha256"),
                "must be 64 hex digits: the SHA-256 of the token (`printf %s TOKEN | rfidgw token hash`)"
                    .into(),
            ));
        }
        if token.token.as_ref().is_some_and(Secret::is_empty) {
            return Err((format!("{key}.token"), "must not be empty".into()));
        }
        if let Some(limit) = &token.rate_limit {
            limit.validate(&format!("{key}.rate_limit"))?;
        }
    }
    Ok(())
}

/// The SHA-256 digest of a token, as configured with `sha256 =`.
pub fn token_digest(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex.trim()).ok()?;
    bytes.try_into().ok()
}

/// Why the configured tokens cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A token file could not be read or is empty.
    #[error("api.tokens[{index}].token_file {}: {problem}", path.display())]
    TokenFile {
        /// The entry.
        index: usize,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Two entries hold the same token.
    #[error(
        "api.tokens `{first}` and `{second}` are the same token; give each holder a token of its own"
    )]
    Duplicate {
        /// One entry's name.
        first: String,
        /// The other's.
        second: String,
    },
}

/// A known token.
struct Known {
    name: String,
    role: Role,
    digest: [u8; 32],
    budget: RateLimitConfig,
}

/// A token bucket.
struct Bucket {
    left: f64,
    at: Instant,
}

/// Who called: the token's name and role (a request extension once authorised).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// The known tokens and their budgets.
pub struct Auth {
    tokens: Vec<Known>,
    buckets: Mutex<HashMap<usize, Bucket>>,
}

impl Auth {
    /// Reads the tokens (token files included). Warns once for each plain-text token, and
    /// when there is none at all (every route but health then answers 401).
    pub fn from_config(
        tokens: &[TokenConfig],
        default_budget: RateLimitConfig,
    ) -> Result<Self, AuthError> {
        let mut known: Vec<Known> = Vec::new();
        for (index, token) in tokens.iter().enumerate() {
            let digest = if let Some(hex) = &token.sha256 {
                parse_digest(hex).unwrap_or_default()
            } else if let Some(plain) = &token.token {
                tracing::warn!(token = %token.name, "api.tokens: this token is given in plain text in the config; prefer sha256 = \"…\" (rfidgw token hash)");
                token_digest(plain.expose())
            } else if let Some(path) = &token.token_file {
                let problem = |problem: String| AuthError::TokenFile {
                    index,
                    path: path.clone(),
                    problem,
                };
                let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(problem("the file is empty".into()));
                }
                token_digest(text)
            } else {
                continue;
            };
            if let Some(same) = known.iter().find(|k| k.digest == digest) {
                return Err(AuthError::Duplicate {
                    first: same.name.clone(),
                    second: token.name.clone(),
                });
            }
            known.push(Known {
                name: token.name.clone(),
                role: token.role,
                digest,
                budget: token.rate_limit.unwrap_or(default_budget),
            });
        }
        if known.is_empty() {
            tracing::warn!(
                "api.tokens: no token is configured; every API route but /healthz and /api/v1/health answers 401"
            );
        }
        Ok(Self {
            tokens: known,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The caller a presented token belongs to. Every known digest is compared, in
    /// constant time each, whichever matches.
    fn identify(&self, presented: &str) -> Option<(usize, Caller)> {
        let digest = token_digest(presented);
        let mut found = None;
        for (index, known) in self.tokens.iter().enumerate() {
            let same: bool = known.digest.ct_eq(&digest).into();
            if same && found.is_none() {
                found = Some(index);
            }
        }
        found.map(|index| {
            let known = &self.tokens[index];
            (
                index,
                Caller {
                    name: known.name.clone(),
                    role: known.role,
                },
            )
        })
    }

    /// Takes one request from the token's bucket: `Err(seconds)` to wait when empty.
    fn spend(&self, index: usize) -> Result<(), u64> {
        let budget = self.tokens[index].budget;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(index).or_insert(Bucket {
            left: f64::from(budget.burst),
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * budget.per_second;
        bucket.left = (bucket.left + refill).min(f64::from(budget.burst));
        bucket.at = now;
        if bucket.left >= 1.0 {
            bucket.left -= 1.0;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.left) / budget.per_second);
            // Whole seconds, rounded up, one at least: Retry-After counts in seconds.
            Err((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
        }
    }

    /// The configured tokens' names and roles (never a digest).
    pub fn list(&self) -> Vec<(String, Role)> {
        self.tokens
            .iter()
            .map(|k| (k.name.clone(), k.role))
            .collect()
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, the OpenAPI document).
    Public,
    /// A token of at least this role.
    Role(Role),
}

/// The longest request target the API reads; a longer one is a 400 `uri_too_long`.
pub const MAX_URI_BYTES: usize = 4096;

/// The auth layer's state: the tokens, and what each route needs (from the OpenAPI
/// document's `security` requirements).
pub struct Guard {
    auth: Arc<Auth>,
    routes: HashMap<(Method, String), Access>,
}

impl Guard {
    /// The guard for the routes of `openapi` (its JSON form). An operation without a
    /// `security` requirement needs `admin` (closed unless documented otherwise).
    pub fn new(auth: Arc<Auth>, openapi: &serde_json::Value) -> Self {
        let mut routes = HashMap::new();
        let Some(paths) = openapi["paths"].as_object() else {
            return Self { auth, routes };
        };
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, operation) in item {
                let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                routes.insert((method, path.clone()), access_of(operation));
            }
        }
        Self { auth, routes }
    }

    /// What `method` on the route `path` (as routed, `/api/v1/loans/{item}`) needs.
    pub fn access(&self, method: &Method, path: &str) -> Access {
        // HEAD is answered by the GET route.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.routes
            .get(&(method.clone(), path.to_owned()))
            .copied()
            .unwrap_or(Access::Role(Role::Admin))
    }
}

fn access_of(operation: &serde_json::Value) -> Access {
    let Some(requirements) = operation["security"].as_array() else {
        return Access::Role(Role::Admin);
    };
    // `[{}]`: no requirement. `[{"bearer": ["operate"]}]`: a token of that role.
    let mut needed = None;
    for requirement in requirements {
        let Some(requirement) = requirement.as_object() else {
            continue;
        };
        if requirement.is_empty() {
            return Access::Public;
        }
        if let Some(scopes) = requirement.get("bearer").and_then(|s| s.as_array()) {
            needed = scopes
                .iter()
                .filter_map(|s| s.as_str().and_then(Role::parse))
                .min();
        }
    }
    Access::Role(needed.unwrap_or(Role::Admin))
}

/// The middleware: a request target of sane length, a known token (401), of a role the
/// route allows (403), within its budget (429). The caller is handed to the handler as a
/// [`Caller`] extension.
pub async fn authorize(
    State(guard): State<Arc<Guard>>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return ApiError::UriTooLong(format!(
            "the request target is longer than {MAX_URI_BYTES} bytes"
        ))
        .into_response();
    }
    let path = matched.as_ref().map_or("", MatchedPath::as_str);
    let Access::Role(needed) = guard.access(request.method(), path) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return ApiError::Unauthorized(
            "this route needs a token: send `Authorization: Bearer <token>` (tokens are configured in [[api.tokens]])"
                .into(),
        )
        .into_response();
    };
    let Some((index, caller)) = guard.auth.identify(&presented) else {
        return ApiError::Unauthorized("the token is not known to this gateway".into())
            .into_response();
    };
    if caller.role < needed {
        return ApiError::Forbidden(format!(
            "token `{}` has the role `{}`; this route needs `{}`",
            caller.name,
            caller.role.as_str(),
            needed.as_str()
        ))
        .into_response();
    }
    if let Err(retry_after_s) = guard.auth.spend(index) {
        tracing::debug!(token = %caller.name, "API rate limit reached");
        return ApiError::RateLimited {
            message: format!(
                "token `{}` is over its request budget (api.rate_limit); retry in {retry_after_s} s",
                caller.name
            ),
            retry_after_s,
        }
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, role: Role, plain: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            role,
            sha256: Some(hex::encode(token_digest(plain))),
            token: None,
            token_file: None,
            rate_limit: None,
        }
    }

    #[test]
    fn a_token_is_known_by_its_digest_and_the_digest_is_sha256() {
        assert_eq!(
            hex::encode(token_digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let auth = Auth::from_config(
            &[
                token("kiosk", Role::Operate, "k-secret"),
                token("dash", Role::Read, "d-secret"),
            ],
            RateLimitConfig::default(),
        )
        .unwrap();
        assert_eq!(auth.identify("d-secret").unwrap().1.name, "dash");
        assert_eq!(auth.identify("k-secret").unwrap().1.role, Role::Operate);
        assert!(auth.identify("k-secre").is_none());
        assert!(auth.identify("").is_none());
    }

    #[test]
    fn entries_must_give_the_token_exactly_one_way_and_have_names_of_their_own() {
        let good = token("a", Role::Read, "x");
        let budget = RateLimitConfig::default();
        assert!(validate(std::slice::from_ref(&good), &budget).is_ok());
        let both = TokenConfig {
            token: Some(Secret::new("x")),
            ..good.clone()
        };
        assert_eq!(validate(&[both], &budget).unwrap_err().0, "api.tokens[0]");
        let short = TokenConfig {
            sha256: Some("abcd".into()),
            ..good.clone()
        };
        assert_eq!(
            validate(&[short], &budget).unwrap_err().0,
            "api.tokens[0].sha256"
        );
        assert_eq!(
            validate(&[good.clone(), good.clone()], &budget)
                .unwrap_err()
                .0,
            "api.tokens[1].name"
        );
        let zero = RateLimitConfig {
            per_second: 0.0,
            burst: 1,
        };
        assert_eq!(validate(&[good], &zero).unwrap_err().0, "api.rate_limit");
        let same = [token("a", Role::Read, "x"), token("b", Role::Admin, "x")];
        assert!(matches!(
            Auth::from_config(&same, budget),
            Err(AuthError::Duplicate { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_bucket_refills_at_its_rate_and_says_how_long_to_wait() {
        let mut kiosk = token("kiosk", Role::Operate, "k");
        kiosk.rate_limit = Some(RateLimitConfig {
            per_second: 0.5,
            burst: 2,
        });
        let auth = Auth::from_config(&[kiosk], RateLimitConfig::default()).unwrap();
        assert_eq!((auth.spend(0), auth.spend(0)), (Ok(()), Ok(())));
        assert_eq!(auth.spend(0), Err(2));
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert_eq!(auth.spend(0), Ok(()));
        assert_eq!(auth.spend(0), Err(2));
    }

    #[test]
    fn a_route_needs_the_role_its_openapi_security_names_and_admin_when_it_names_none() {
        let doc = serde_json::json!({"paths": {
            "/a": {"get": {"security": [{"bearer": ["read"]}]},
                   "post": {"security": [{"bearer": ["operate"]}]}},
            "/h": {"get": {"security": [{}]}},
            "/x": {"get": {}}
        }});
        let guard = Guard::new(
            Arc::new(Auth::from_config(&[], RateLimitConfig::default()).unwrap()),
            &doc,
        );
        assert_eq!(guard.access(&Method::GET, "/a"), Access::Role(Role::Read));
        assert_eq!(guard.access(&Method::HEAD, "/a"), Access::Role(Role::Read));
        assert_eq!(
            guard.access(&Method::POST, "/a"),
            Access::Role(Role::Operate)
        );
        assert_eq!(guard.access(&Method::GET, "/h"), Access::Public);
        assert_eq!(guard.access(&Method::GET, "/x"), Access::Role(Role::Admin));
        assert_eq!(
            guard.access(&Method::GET, "/unknown"),
            Access::Role(Role::Admin)
        );
    }
}
