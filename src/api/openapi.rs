//! The OpenAPI 3.1 document: the routes' own documentation (`#[utoipa::path]` on each
//! handler, collected by the router in `super::routes`) plus, added here in one place, the
//! error answers every route shares (one [`ErrorBody`] shape, status by status).

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rfidgw",
        description = "The REST API of rfidgw, the library RFID gateway: status, events (paged and live), \
            gate alarms, returns and self-check, device actions and the SIP2 ⇄ JSON bridge.\n\n\
            Every route but `/healthz`, `/api/v1/health` and this document needs \
            `Authorization: Bearer <token>` of the role its `security` requirement names \
            (`read` ⊂ `operate` ⊂ `admin`; tokens are configured in `[[api.tokens]]`). \
            Every error is `{\"error\": {\"code\": …, \"message\": …}}` with a stable code."
    ),
    modifiers(&Bearer),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "meta", description = "Health, versions, metrics, tokens, this document"),
        (name = "events", description = "Public events (format v1): paged and live"),
        (name = "stations", description = "Gates, alarms, people counts, status"),
        (name = "circulation", description = "Returns and self-check: queue, owed writes, worklist, kiosks, sort plans"),
        (name = "devices", description = "Devices and what staff may make them do"),
        (name = "bridge", description = "The SIP2 ⇄ JSON bridge to the library system"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme the routes name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from [[api.tokens]]; its scopes here are the role a route needs",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document before the routes are added.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    })
}

/// The finished document as JSON: every operation gets the error answers it can give.
pub fn finish(document: &utoipa::openapi::OpenApi) -> Value {
    let mut document = serde_json::to_value(document).unwrap_or_default();
    let Some(paths) = document["paths"].as_object_mut() else {
        return document;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            let has_body = operation.get("requestBody").is_some();
            let mut errors: Vec<(&str, &str)> = Vec::new();
            if secured {
                errors.extend([
                    ("400", "bad_request: a query parameter, path segment or body is malformed; uri_too_long: the request target is longer than 4096 bytes"),
                    ("401", "unauthorized: no token, or one this gateway does not know"),
                    ("403", "forbidden: the token's role does not allow this route"),
                    ("429", "rate_limited: the token is over its budget; see Retry-After"),
                    ("503", "unavailable, store_unavailable (or, for the bridge, ils_offline / ils_not_configured; for devices, device_unavailable)"),
                ]);
            }
            if path.contains('{') || path == "/metrics" {
                errors.push(("404", "not_found: what the path names does not exist"));
            }
            if has_body {
                errors.extend([
                    ("413", "payload_too_large: the body exceeds api.max_body_bytes"),
                    ("422", "unprocessable: the body has the wrong shape (the message names the field); refused: a station said no (see reason)"),
                ]);
            }
            if path.starts_with("/api/v1/stations/{station}") {
                errors.extend([
                    (
                        "409",
                        "conflict: the station is not of a kind (or in a state) to do this",
                    ),
                    ("422", "refused: the station said no (see reason)"),
                ]);
            }
            if path.starts_with("/api/v1/devices/{device}") {
                errors.extend([
                    (
                        "409",
                        "conflict: the site's security mode keeps the state off the tag",
                    ),
                    ("422", "unprocessable: the device cannot do this"),
                    ("504", "device_timeout: the device did not answer in time"),
                ]);
            }
            if path.starts_with("/api/v1/ils/") {
                errors.extend([
                    ("502", "ils_failed: the library system's answer could not be read"),
                    ("504", "ils_outcome_unknown: the request went out and its answer was lost; it may have happened, look the item up before retrying"),
                ]);
            }
            let Some(responses) = operation["responses"].as_object_mut() else {
                continue;
            };
            for (status, description) in errors {
                let mut response = error_response(description);
                if status == "429" {
                    response["headers"] = json!({"Retry-After": {
                        "description": "Seconds until the token may call again",
                        "required": true,
                        "schema": {"type": "integer", "minimum": 1}
                    }});
                }
                responses.entry(status).or_insert(response);
            }
        }
    }
    document
}
