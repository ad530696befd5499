//! The OpenAPI 3 document, generated from the registry (paths) and the model's types (schemas).

use kuma_model::{json_schemas, ResourceType};
use serde_json::{json, Map, Value};

fn error_responses() -> Value {
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let mut responses = Map::new();
    for (code, what) in [
        ("400", "invalid resource, with every violation in causes"),
        ("404", "not found"),
        ("405", "writes refused (read-only mode)"),
        ("409", "changed concurrently; retry"),
        ("412", "If-Match version is stale"),
        ("413", "body too large"),
        ("503", "store unavailable; retry"),
    ] {
        let mut r = error.clone();
        r["description"] = what.into();
        responses.insert(code.into(), r);
    }
    Value::Object(responses)
}

fn list_op(t: ResourceType, summary: String, overview: bool) -> Value {
    let item = if overview {
        json!({"$ref": "#/components/schemas/DataplaneOverview"})
    } else {
        json!({"$ref": format!("#/components/schemas/{}Resource", t.name())})
    };
    let mut parameters = vec![
        json!({"name": "size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}),
        json!({"name": "offset", "in": "query", "schema": {"type": "string"}}),
    ];
    if overview {
        parameters.push(json!({"name": "tag", "in": "query", "description": "KEY:VALUE, repeatable", "schema": {"type": "array", "items": {"type": "string"}}, "style": "form", "explode": true}));
    }
    json!({
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": "a page", "content": {"application/json": {"schema": {
                "type": "object", "required": ["total", "items", "next"],
                "properties": {"total": {"type": "integer"}, "items": {"type": "array", "items": item}, "next": {"type": "string", "nullable": true}}
            }}}}
        }
    })
}

/// A list of Secrets or GlobalSecrets: `include=data` serves their bytes, to admins only.
fn list_secrets_op(t: ResourceType, summary: String) -> Value {
    let mut op = list_op(t, summary, false);
    op["parameters"].as_array_mut().expect("array").push(json!({
        "name": "include", "in": "query", "required": false,
        "description": "data: each secret with its bytes (base64), for backups and moving between stores; admins only (group mesh-system:admin), audit-logged",
        "schema": {"type": "string", "enum": ["data"]}
    }));
    let error = json!({"$ref": "#/components/schemas/Error"});
    op["responses"]["400"] = json!({"description": "invalid paging or include",
        "content": {"application/json": {"schema": error}}});
    op["responses"]["403"] = json!({"description": "include=data by a user who is not an admin",
        "content": {"application/json": {"schema": error}}});
    op
}

fn list_of(t: ResourceType, summary: String) -> Value {
    if matches!(t, ResourceType::Secret | ResourceType::GlobalSecret) {
        list_secrets_op(t, summary)
    } else {
        list_op(t, summary, false)
    }
}

fn item_ops(t: ResourceType) -> Value {
    let schema = json!({"$ref": format!("#/components/schemas/{}Resource", t.name())});
    let mut get_responses = error_responses();
    get_responses["200"] =
        json!({"description": "the resource", "content": {"application/json": {"schema": schema}}});
    let mut put_responses = error_responses();
    put_responses["200"] = json!({"description": "updated"});
    put_responses["201"] = json!({"description": "created"});
    let mut delete_responses = error_responses();
    delete_responses["200"] = json!({"description": "deleted, with everything it owned"});
    json!({
        "get": {"summary": format!("Get a {}", t.name()), "responses": get_responses},
        "put": {
            "summary": format!("Create or update a {}", t.name()),
            "parameters": [{"name": "If-Match", "in": "header", "required": false, "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema}}},
            "responses": put_responses
        },
        "delete": {"summary": format!("Delete a {}", t.name()), "responses": delete_responses},
    })
}

/// Builds the document once; it only changes with the binary.
pub(crate) fn document(version: &str) -> Value {
    let (schemas, definitions) = json_schemas();
    let mut components = Map::new();
    components.extend(definitions);
    for (t, schema) in schemas {
        components.insert(format!("{}Resource", t.name()), schema);
    }
    components.insert("Error".into(), json!({
        "type": "object", "required": ["title", "details"],
        "properties": {"title": {"type": "string"}, "details": {"type": "string"},
            "causes": {"type": "array", "items": {"type": "object", "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}
    }));
    components.insert("DataplaneOverview".into(), json!({
        "type": "object",
        "properties": {"type": {"type": "string", "enum": ["DataplaneOverview"]}, "mesh": {"type": "string"}, "name": {"type": "string"},
            "creationTime": {"type": "string", "format": "date-time"}, "modificationTime": {"type": "string", "format": "date-time"},
            "dataplane": {"type": "object"}, "dataplaneInsight": {"type": "object"}}
    }));

    let mut paths = Map::new();
    paths.insert("/".into(), json!({"get": {"summary": "Index", "responses": {"200": {"description": "{tagline, version, hostname, gui: where the web GUI is}"}}}}));
    for t in ResourceType::all() {
        let d = t.descriptor();
        if t.is_mesh_scoped() {
            let mesh_param = json!({"name": "mesh", "in": "path", "required": true, "schema": {"type": "string"}});
            let name_param = json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
            let mut list = list_of(t, format!("List {} in a mesh", d.path));
            list["parameters"].as_array_mut().expect("array").push(mesh_param.clone());
            paths.insert(format!("/meshes/{{mesh}}/{}", d.path), json!({"get": list}));
            let mut item = item_ops(t);
            item["parameters"] = json!([mesh_param, name_param]);
            paths.insert(format!("/meshes/{{mesh}}/{}/{{name}}", d.path), item);
            paths.insert(
                format!("/{}", d.path),
                json!({"get": list_of(t, format!("List {} across meshes", d.path))}),
            );
        } else {
            paths.insert(
                format!("/{}", d.path),
                json!({"get": list_of(t, format!("List {}", d.path))}),
            );
            let mut item = item_ops(t);
            item["parameters"] = json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
            paths.insert(format!("/{}/{{name}}", d.path), item);
        }
    }
    let mut overview =
        list_op(ResourceType::Dataplane, "Dataplanes with their insights".into(), true);
    overview["parameters"].as_array_mut().expect("array").push(
        json!({"name": "mesh", "in": "path", "required": true, "schema": {"type": "string"}}),
    );
    paths.insert("/meshes/{mesh}/dataplanes+insights".into(), json!({"get": overview}));
    let mut overview_item = error_responses();
    overview_item["200"] = json!({"description": "a Dataplane with its insight",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DataplaneOverview"}}}});
    paths.insert(
        "/meshes/{mesh}/dataplanes+insights/{name}".into(),
        json!({
            "parameters": [
                {"name": "mesh", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
            ],
            "get": {"summary": "A Dataplane with its insight", "responses": overview_item}
        }),
    );
    let mut policies_item = error_responses();
    policies_item["200"] = json!({"description": "per inbound, outbound and for the whole dataplane, the policy of each type that applies, its rank and why",
        "content": {"application/json": {"schema": {"type": "object"}}}});
    paths.insert(
        "/meshes/{mesh}/dataplanes/{name}/policies".into(),
        json!({
            "parameters": [
                {"name": "mesh", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
            ],
            "get": {"summary": "The policies that apply to a Dataplane", "responses": policies_item}
        }),
    );
    let mut xds_item = error_responses();
    xds_item["200"] = json!({"description": "the Envoy config the control plane holding the dataplane's stream generated for it, as Envoy's config dump (private keys redacted); other peers forward to that one",
        "content": {"application/json": {"schema": {"type": "object"}}}});
    paths.insert(
        "/meshes/{mesh}/dataplanes/{name}/xds".into(),
        json!({
            "parameters": [
                {"name": "mesh", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
            ],
            "get": {"summary": "A connected Dataplane's Envoy config dump (admin only)", "responses": xds_item}
        }),
    );
    paths.insert("/dataplanes+insights".into(), json!({"get": list_op(ResourceType::Dataplane, "Dataplanes with their insights across meshes".into(), true)}));

    json!({
        "openapi": "3.0.3",
        "info": {"title": "kuma-rs HTTP API", "version": version},
        "paths": paths,
        "components": {"schemas": components},
    })
}
