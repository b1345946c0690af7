//! Fuzz the REST API's request bodies: any bytes as the body of any route that takes one
//! never panic, and come back as the body its handler would get or as the client's error,
//! a 400 (not JSON) or a 422 (JSON of the wrong shape) with a message. A body is taken
//! only when it is a JSON object (or empty or `null` where the body is optional), checked
//! against an independent parse. A patron's PIN is never echoed: an error's message holds
//! the PIN only where the same body with another PIN of the same length gives a message
//! holding it too (it came from elsewhere in the body, or from the message's own words).
//!
//! Input: the route (one byte, an index into `rfidgw::api::BODY_ROUTES`), then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfidgw::api::{BODY_ROUTES, parse_route_body};

fuzz_target!(|input: &[u8]| {
    let Some((&route, body)) = input.split_first() else {
        return;
    };
    let route = usize::from(route);
    let name = BODY_ROUTES[route % BODY_ROUTES.len()];
    let blank = body.iter().all(u8::is_ascii_whitespace);
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let result = parse_route_body(route, body);
    let message = match &result {
        Ok(()) => {
            let shape_ok = blank || json.as_ref().is_some_and(|v| v.is_object() || v.is_null());
            assert!(shape_ok, "{name} took a body that is no JSON object");
            return;
        }
        Err(error) => {
            let (status, code) = error.code();
            assert!(
                matches!(code, "bad_request" | "unprocessable"),
                "{name}: a body gave {status} {code}"
            );
            // Not JSON at all is a 400; JSON of the wrong shape a 422.
            if json.is_none() && !blank {
                assert_eq!(code, "bad_request", "{name}: {error}");
            }
            let message = error.to_string();
            assert!(!message.is_empty(), "{name}: an error without a message");
            message
        }
    };
    // The PIN: a valid one (a string the parser takes as a PIN) of four characters or
    // more, checked against the same body with the PIN replaced.
    let Some(serde_json::Value::Object(mut object)) = json else {
        return;
    };
    let Some(serde_json::Value::String(pin)) = object.get("pin").cloned() else {
        return;
    };
    let takes =
        pin.chars().count() <= 128 && !pin.contains('|') && !pin.chars().any(char::is_control);
    if !takes || pin.chars().count() < 4 || !message.contains(&pin) {
        return;
    }
    let other = "Q".repeat(pin.chars().count());
    object.insert("pin".into(), serde_json::Value::String(other));
    let replaced = serde_json::to_vec(&object).expect("a JSON object serialises");
    let again = parse_route_body(route, &replaced)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        again.contains(&pin),
        "{name}: the error message echoes the PIN: {message}"
    );
});
