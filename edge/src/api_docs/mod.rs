//! The API documents, generated from the code: an OpenAPI 3.1 document for the edge's HTTP
//! endpoints and an AsyncAPI 3 document for its WebSockets and the NATS subjects. The router
//! serves them at `/openapi.json` and `/asyncapi.json`; `tests/api_docs.rs` validates them.
//!
//! Sources: routes from [`endpoints::ENDPOINTS`], message and body schemas from
//! [`tablewire_schemas::json_schemas`] (the documents of `schemas/json/`), subjects from
//! [`tablewire_nats::subject`].

pub mod asyncapi;
pub mod endpoints;
pub mod openapi;

use crate::http::{self, Body};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};
use std::sync::OnceLock;

pub use asyncapi::asyncapi;
pub use openapi::openapi;

/// `GET /openapi.json` and `GET /asyncapi.json` (axum answers `HEAD` from the same route).
pub fn routes<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::routing::get;
    axum::Router::new()
        .route("/openapi.json", get(|| async { serve_openapi() }))
        .route("/asyncapi.json", get(|| async { serve_asyncapi() }))
}

/// Answers `GET /openapi.json`.
pub fn serve_openapi() -> Response<Body> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    http::json(StatusCode::OK, DOCUMENT.get_or_init(openapi))
}

/// Answers `GET /asyncapi.json`.
pub fn serve_asyncapi() -> Response<Body> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    http::json(StatusCode::OK, DOCUMENT.get_or_init(asyncapi))
}

/// Where both documents keep their schemas.
const SCHEMAS: &str = "#/components/schemas/";

/// The documents of `schemas/json/` as one `components.schemas` map: each file under its name
/// without `.json` (`pos.server`), each of its `$defs` under `{file}.{def}` (`pos.server.Order`),
/// with every `$ref` pointing there. Both OpenAPI 3.1 and AsyncAPI 3 resolve `$ref` from the
/// document's root, so a schema's own `#/$defs/…` would not resolve once inside the document.
pub fn component_schemas() -> Map<String, Value> {
    let mut all = Map::new();
    for (file, mut schema) in tablewire_schemas::json_schemas() {
        let name = schema_name(file);
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
            if let Some(Value::Object(defs)) = object.remove("$defs") {
                for (def, mut def_schema) in defs {
                    point_refs_at_components(&mut def_schema, name);
                    all.insert(format!("{name}.{def}"), def_schema);
                }
            }
        }
        point_refs_at_components(&mut schema, name);
        all.insert(name.to_string(), schema);
    }
    all
}

/// The component name of a `schemas/json/` file: its name without `.json`.
pub fn schema_name(file: &str) -> &str {
    file.strip_suffix(".json").unwrap_or(file)
}

/// A `$ref` to the component schema `name`.
pub fn schema_ref(name: &str) -> Value {
    serde_json::json!({ "$ref": format!("{SCHEMAS}{name}") })
}

fn point_refs_at_components(schema: &mut Value, file: &str) {
    match schema {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    Value::String(target) if key == "$ref" => {
                        if let Some(def) = target.strip_prefix("#/$defs/") {
                            *target = format!("{SCHEMAS}{file}.{def}");
                        } else if target == "#" {
                            *target = format!("{SCHEMAS}{file}");
                        }
                    }
                    other => point_refs_at_components(other, file),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| point_refs_at_components(item, file)),
        _ => {}
    }
}

/// The `{name}` parameters of a path or subject template, in order.
pub fn template_parameters(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    match value {
                        Value::String(target) if key == "$ref" => out.push(target.clone()),
                        other => refs(other, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_ref_resolves_to_a_component() {
        let schemas = component_schemas();
        let mut targets = Vec::new();
        refs(&Value::Object(schemas.clone()), &mut targets);
        assert!(!targets.is_empty());
        for target in targets {
            let name = target.strip_prefix(SCHEMAS).unwrap_or(&target);
            assert!(schemas.contains_key(name), "unresolved $ref {target}");
        }
    }

    #[test]
    fn every_schema_the_routes_name_exists() {
        let schemas = component_schemas();
        for endpoint in endpoints::ENDPOINTS {
            let named = match endpoint.kind {
                endpoints::Kind::Http { request, response } => vec![
                    request,
                    match response {
                        endpoints::Response::Json(schema) => schema,
                        endpoints::Response::Other(_) => None,
                    },
                ],
                endpoints::Kind::WebSocket { receives, sends } => vec![receives, sends],
            };
            for name in named.into_iter().flatten() {
                assert!(
                    schemas.contains_key(name),
                    "{}: no schema {name}",
                    endpoint.path
                );
            }
        }
    }

    #[test]
    fn parameters_are_read_from_templates() {
        assert_eq!(template_parameters("/api/devices/{id}/config"), vec!["id"]);
        assert_eq!(
            template_parameters("tw.in.pos.{tenant}.{key}"),
            vec!["tenant", "key"]
        );
        assert!(template_parameters("/healthz").is_empty());
    }
}
