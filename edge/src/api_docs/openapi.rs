//! The OpenAPI 3.1 document of the edge's HTTP endpoints, built from
//! [`super::endpoints::ENDPOINTS`] and the schemas of `schemas/json/`. Served at `/openapi.json`.

use super::components::{component_schemas, schema_ref, template_parameters};
use super::endpoints::{ENDPOINTS, Kind, Response};
use serde_json::{Map, Value, json};

/// The document.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for endpoint in ENDPOINTS {
        let Kind::Http { request, response } = endpoint.kind else {
            continue;
        };
        let mut operation = json!({
            "summary": endpoint.summary,
            "operationId": operation_id(endpoint.method, endpoint.path),
            "responses": {
                "2XX": success(response),
                "default": {
                    "description": "An error from the catalogue (`schemas/json/error.json`)",
                    "content": { "application/json": { "schema": schema_ref("error") } },
                },
            },
        });
        let parameters: Vec<Value> = template_parameters(endpoint.path)
            .into_iter()
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = request {
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema_ref(body) } },
            });
        }
        if let Value::Object(item) = paths
            .entry(endpoint.path)
            .or_insert_with(|| Value::Object(Map::new()))
        {
            item.insert(endpoint.method.to_ascii_lowercase(), operation);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tablewire edge (HTTP)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP endpoints of a tablewire edge, generated from the edge's route table and the \
                            wire types in schemas/. The WebSocket endpoints and the NATS subjects are in /asyncapi.json.",
        },
        "servers": [{ "url": "http://127.0.0.1:8080", "description": "tablewire dev" }],
        "paths": paths,
        "components": { "schemas": component_schemas() },
    })
}

fn success(response: Response) -> Value {
    let (content_type, schema) = match response {
        Response::Json(Some(name)) => ("application/json", schema_ref(name)),
        Response::Json(None) => ("application/json", json!({ "type": "object" })),
        Response::Other(content_type) => (content_type, json!({ "type": "string" })),
    };
    json!({
        "description": "Success",
        "content": { content_type: { "schema": schema } },
    })
}

/// `put_api_devices_id_config` for `PUT /api/devices/{id}/config`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect();
    let mut id = method.to_ascii_lowercase();
    for word in words {
        id.push('_');
        id.push_str(&word);
    }
    id
}
