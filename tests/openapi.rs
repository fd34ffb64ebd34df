//! `protocol/openapi.yaml` agrees with the server: the same (method, path) pairs as the route
//! table `wsgate::ROUTES`, an API key on every `/api/v1` operation, closed request bodies,
//! references that resolve, and the server serves the file byte for byte.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/openapi.yaml");
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];
/// The one `/api/v1` operation that needs no API key.
const PUBLIC_API_ROUTE: (&str, &str) = ("GET", "/api/v1/openapi.yaml");

fn spec_bytes() -> Vec<u8> {
    std::fs::read(SPEC_PATH).expect("protocol/openapi.yaml is readable")
}

fn spec() -> Value {
    serde_yaml_ng::from_slice(&spec_bytes()).expect("protocol/openapi.yaml is valid YAML")
}

/// Every operation of the spec: (METHOD, path template, operation object).
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let paths = spec["paths"].as_object().expect("the spec has paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is a mapping");
        for (key, op) in item {
            if METHODS.contains(&key.as_str()) {
                ops.push((key.to_uppercase(), path.clone(), op.clone()));
            }
        }
    }
    ops
}

/// Follows a local `$ref` (`#/components/...`), or returns the value itself.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("only local references");
            let target = spec
                .pointer(pointer)
                .unwrap_or_else(|| panic!("unresolved $ref {r}"));
            resolve(spec, target)
        }
        None => value,
    }
}

#[test]
fn the_spec_has_exactly_the_routes_of_the_route_table() {
    let spec = spec();
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));

    let in_spec: Vec<(String, String)> = operations(&spec)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let in_server: Vec<(String, String)> = wsgate::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let spec_set: BTreeSet<_> = in_spec.iter().cloned().collect();
    let server_set: BTreeSet<_> = in_server.iter().cloned().collect();
    assert_eq!(
        server_set.len(),
        in_server.len(),
        "wsgate::ROUTES lists a route twice"
    );

    let missing: Vec<_> = server_set.difference(&spec_set).collect();
    let extra: Vec<_> = spec_set.difference(&server_set).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "protocol/openapi.yaml and wsgate::ROUTES disagree\n  served but not in the spec: {missing:?}\n  in the spec but not served: {extra:?}"
    );
}

#[test]
fn every_api_operation_needs_an_api_key_and_documents_401_and_403() {
    let spec = spec();
    let global = spec["security"].clone();
    let key_schemes: BTreeSet<&str> = spec["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, s)| {
            (s["type"] == "http" && s["scheme"] == "bearer" && s.get("bearerFormat").is_none())
                || (s["type"] == "apiKey" && s["in"] == "header" && s["name"] == "X-API-Key")
        })
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        key_schemes.len(),
        2,
        "an API-key bearer scheme and an X-API-Key header scheme"
    );

    for (method, path, op) in operations(&spec) {
        if !path.starts_with("/api/v1/") || (method.as_str(), path.as_str()) == PUBLIC_API_ROUTE {
            continue;
        }
        let security = op.get("security").unwrap_or(&global);
        let alternatives = security.as_array().unwrap();
        assert!(
            !alternatives.is_empty(),
            "{method} {path}: no security requirement"
        );
        for alt in alternatives {
            let schemes: Vec<&str> = alt
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert!(
                !schemes.is_empty() && schemes.iter().all(|s| key_schemes.contains(s)),
                "{method} {path}: security alternative {alt} is not an API key"
            );
        }
        let responses = op["responses"].as_object().unwrap();
        for status in ["401", "403"] {
            assert!(
                responses.contains_key(status),
                "{method} {path}: no {status} response"
            );
        }
    }
    let public = operations(&spec)
        .into_iter()
        .find(|(m, p, _)| (m.as_str(), p.as_str()) == PUBLIC_API_ROUTE)
        .unwrap();
    assert_eq!(public.2["security"], serde_json::json!([]));
}

#[test]
fn request_bodies_are_closed_json_objects_with_400_and_413_documented() {
    let spec = spec();
    for (method, path, op) in operations(&spec) {
        let Some(body) = op.get("requestBody") else {
            continue;
        };
        let body = resolve(&spec, body);
        let content = body["content"].as_object().unwrap();
        assert_eq!(
            content.keys().collect::<Vec<_>>(),
            ["application/json"],
            "{method} {path}: bodies are JSON only"
        );
        let mut objects = 0;
        check_closed(
            &spec,
            &content["application/json"]["schema"],
            &format!("{method} {path}"),
            &mut objects,
        );
        assert!(objects > 0, "{method} {path}: the body is not an object");
        let responses = op["responses"].as_object().unwrap();
        for status in ["400", "413"] {
            assert!(
                responses.contains_key(status),
                "{method} {path}: a body but no {status} response"
            );
        }
    }
}

/// Asserts every object schema reachable from `schema` (through `$ref`, `oneOf`, `anyOf`,
/// `allOf`, `properties` and `items`) has `additionalProperties: false`.
fn check_closed(spec: &Value, schema: &Value, at: &str, objects: &mut usize) {
    let schema = resolve(spec, schema);
    for combinator in ["oneOf", "anyOf", "allOf"] {
        for branch in schema[combinator].as_array().into_iter().flatten() {
            check_closed(spec, branch, at, objects);
        }
    }
    if schema["type"] == "object" {
        *objects += 1;
        assert_eq!(
            schema["additionalProperties"],
            Value::Bool(false),
            "{at}: an object schema without additionalProperties: false: {schema}"
        );
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        check_closed(spec, property, &format!("{at}.{name}"), objects);
    }
    if let Some(items) = schema.get("items") {
        check_closed(spec, items, &format!("{at}[]"), objects);
    }
}

#[test]
fn every_reference_resolves() {
    let spec = spec();
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(spec.pointer(pointer).is_some(), "unresolved $ref {r}");
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_server_serves_the_spec_byte_for_byte_without_an_api_key() {
    let server = start_server(|c| c.api_keys = Some("openapi-test-key".into()));
    let res = reqwest::get(format!("http://{}/api/v1/openapi.yaml", server.addr))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/yaml"),
        "content type: {content_type}"
    );
    let body = res.bytes().await.unwrap();
    assert!(
        body == spec_bytes(),
        "GET /api/v1/openapi.yaml differs from protocol/openapi.yaml ({} bytes served, {} in the file)",
        body.len(),
        spec_bytes().len()
    );
    server.handle.shutdown().await;
}
