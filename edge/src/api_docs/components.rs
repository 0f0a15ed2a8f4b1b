//! The schemas both API documents share: the documents of `schemas/json/` as one
//! `components.schemas` map, `$ref`s into it, and the `{name}` parameters of a template. Used by
//! [`super::openapi`] and [`super::asyncapi`].

use serde_json::{Map, Value};

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
    use crate::api_docs::endpoints;

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
