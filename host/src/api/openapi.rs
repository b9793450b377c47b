//! `GET /openapi.json`: an OpenAPI 3.1 document of the API as it is now,
//! generated from the loaded plugins and rebuilt when they change (hot
//! reload). The contract has no input schema, so an event type's body and
//! a route's parameters are described by the plugin's output columns of
//! the same names (type and description): a body that fits the document
//! may still be rejected by the plugin (400, with the reason).

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::ApiState;
use crate::plugin::contract::{ColumnSpec, ColumnType};
use crate::plugin::{LoadedPlugin, Snapshot};

pub const PATH: &str = "/openapi.json";

/// The document of the latest snapshot generation.
#[derive(Default)]
pub struct Cache {
    current: Mutex<Option<(u64, Arc<str>)>>,
}

pub async fn serve(State(state): State<Arc<ApiState>>) -> Response {
    let snapshot = state.registry.snapshot();
    let doc = {
        let mut current = state
            .openapi
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some((g, doc)) if *g == snapshot.generation => doc.clone(),
            _ => {
                let doc: Arc<str> = document(&snapshot, &state).to_string().into();
                *current = Some((snapshot.generation, doc.clone()));
                doc
            }
        }
    };
    state.counters.request(PATH, 200);
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}

fn column_schema(kind: ColumnType) -> Value {
    match kind {
        ColumnType::String => json!({"type": "string"}),
        ColumnType::Int64 => json!({"type": "integer", "format": "int64"}),
        ColumnType::Float64 => json!({"type": "number", "format": "double"}),
        ColumnType::Bool => json!({"type": "boolean"}),
        ColumnType::Timestamp => json!({"type": "string", "format": "date-time"}),
    }
}

fn with_description(mut schema: Value, c: &ColumnSpec) -> Value {
    if !c.description.is_empty()
        && let Some(m) = schema.as_object_mut()
    {
        m.insert("description".into(), Value::from(c.description.as_str()));
    }
    schema
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The error replies every event route may give.
fn event_errors(keyed: bool, out: &mut Map<String, Value>) {
    let mut codes = vec![
        (
            "400",
            "Malformed request, or the event was rejected (the reason names the field)",
        ),
        ("403", "The write key may not write this event type"),
        ("404", "No plugin owns the event type"),
        ("408", "The body did not arrive in time"),
        ("413", "The body is too large (after decompression)"),
        ("414", "The request target is too long"),
        ("415", "Unsupported Content-Type or Content-Encoding"),
        ("431", "Request headers too large"),
        (
            "503",
            "Not stored (the transport did not acknowledge, or the plugin is busy): retry",
        ),
    ];
    if keyed {
        codes.push(("401", "No valid write key"));
    }
    for (code, what) in codes {
        out.insert(code.into(), error_response(what));
    }
}

/// Headers a single-event route reads.
fn single_headers() -> Vec<Value> {
    vec![
        json!({"name": "X-User-Id", "in": "header", "required": false,
               "description": "The player (also the Kafka key); without it the Host header stands for the player",
               "schema": {"$ref": "#/components/schemas/UserId"}}),
        json!({"name": "Idempotency-Key", "in": "header", "required": false,
               "description": "The client's id of this event: a retry with the same key (and player and game) is stored once and answered with the same event id",
               "schema": {"$ref": "#/components/schemas/ClientId"}}),
        json!({"name": "X-Client-Ts", "in": "header", "required": false,
               "description": "Device time of the event: RFC 3339 or epoch milliseconds",
               "schema": {"type": "string"}}),
        json!({"name": "X-Sent-At", "in": "header", "required": false,
               "description": "Device time of sending (with X-Client-Ts, corrects the device's clock skew into event_ts)",
               "schema": {"type": "string"}}),
    ]
}

fn ok_event_headers() -> Value {
    json!({"X-Event-Id": {"description": "The stored event's id", "schema": {"type": "string", "format": "uuid"}}})
}

fn event_body_schema(plugin: &LoadedPlugin) -> Value {
    let mut props = Map::new();
    for c in &plugin.meta.columns {
        props.insert(c.name.clone(), with_description(column_schema(c.kind), c));
    }
    json!({"type": "object", "properties": props,
           "description": format!("The fields of a {} event (the plugin {} {} validates them; \
                                   described by its table's columns)",
                                  plugin.meta.event_type, plugin.meta.name, plugin.meta.version)})
}

fn plugin_route_op(plugin: &LoadedPlugin, keyed: bool) -> Option<(String, String, Value)> {
    let route = plugin.meta.route.as_ref()?;
    let mut params: Vec<Value> = route
        .params()
        .map(|p| {
            let schema = match plugin.meta.columns.iter().find(|c| c.name == p) {
                Some(c) => with_description(column_schema(c.kind), c),
                None => json!({"type": "string"}),
            };
            json!({"name": p, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    params.extend(single_headers());
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "Stored; the body is the plugin's reply",
               "headers": ok_event_headers(),
               "content": {"text/plain": {"schema": {"type": "string"}}}}),
    );
    event_errors(keyed, &mut responses);
    let op = json!({
        "operationId": format!("route_{}", plugin.meta.event_type),
        "summary": format!("Record a {} event (the seed's route)", plugin.meta.event_type),
        "tags": ["events"],
        "parameters": params,
        "responses": responses,
    });
    Some((route.path.clone(), route.method.to_ascii_lowercase(), op))
}

fn event_op(plugin: &LoadedPlugin, keyed: bool) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({"description": "Stored",
               "headers": ok_event_headers(),
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}}),
    );
    event_errors(keyed, &mut responses);
    json!({
        "operationId": format!("event_{}", plugin.meta.event_type),
        "summary": format!("Record a {} event", plugin.meta.event_type),
        "description": "The body may be sent with Content-Encoding gzip or zstd.",
        "tags": ["events"],
        "parameters": single_headers(),
        "requestBody": {"required": true, "content": {"application/json": {"schema": event_body_schema(plugin)}}},
        "responses": responses,
    })
}

/// The document for `snapshot`.
pub fn document(snapshot: &Snapshot, state: &ApiState) -> Value {
    let keyed = state.ingest.keyed();
    let mut plugins: Vec<&Arc<LoadedPlugin>> = snapshot.plugins().collect();
    plugins.sort_by(|a, b| a.meta.event_type.cmp(&b.meta.event_type));
    let types: Vec<&str> = plugins.iter().map(|p| p.meta.event_type.as_str()).collect();

    let mut paths = Map::new();
    let health = |what: &str| {
        json!({"get": {"operationId": what, "tags": ["operations"],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
            "503": {"description": "Not OK, with the reason", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
        }}})
    };
    paths.insert("/healthz".into(), health("healthz"));
    paths.insert("/readyz".into(), health("readyz"));
    paths.insert(
        PATH.into(),
        json!({"get": {"operationId": "openapi", "tags": ["operations"],
            "responses": {"200": {"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );

    // The batch endpoint.
    let mut batch_responses = Map::new();
    batch_responses.insert(
        "200".into(),
        json!({"description": "Every event has a result, in order: accepted (stored), or rejected (do not resend)",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchReply"}}}}),
    );
    event_errors(keyed, &mut batch_responses);
    batch_responses.insert(
        "503".into(),
        json!({"description": "Some events are unavailable (not stored): resend those (or the whole batch, if every event has an event_id)",
               "headers": {"Retry-After": {"schema": {"type": "string"}}},
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchReply"}}}}),
    );
    batch_responses.remove("404");
    paths.insert(
        super::batch::PATH.into(),
        json!({"post": {
            "operationId": "batch",
            "summary": "Record many events (partial success)",
            "description": "JSON, or NDJSON (one event per line; the batch's sent_at and user_id in the X-Sent-At and X-User-Id headers). The body may be sent with Content-Encoding gzip or zstd.",
            "tags": ["events"],
            "parameters": [
                {"name": "X-User-Id", "in": "header", "required": false, "schema": {"$ref": "#/components/schemas/UserId"}},
                {"name": "X-Sent-At", "in": "header", "required": false, "schema": {"type": "string"}}
            ],
            "requestBody": {"required": true, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Batch"}},
                "application/x-ndjson": {"schema": {"type": "string"}}
            }},
            "responses": batch_responses,
        }}),
    );

    // /events/{event_type}: one operation per loaded type, and the template.
    for p in &plugins {
        paths.insert(
            format!("/events/{}", p.meta.event_type),
            json!({"post": event_op(p, keyed)}),
        );
    }
    let mut generic = Map::new();
    generic.insert(
        "200".into(),
        json!({"description": "Stored", "headers": ok_event_headers(),
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}}),
    );
    event_errors(keyed, &mut generic);
    let mut generic_params = vec![json!({"name": "event_type", "in": "path", "required": true,
        "schema": {"type": "string"}, "description": "An event type; the loaded ones have operations of their own"})];
    generic_params.extend(single_headers());
    paths.insert(
        "/events/{event_type}".into(),
        json!({"post": {"operationId": "event", "tags": ["events"],
            "summary": "Record an event of any type",
            "parameters": generic_params,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": generic}}),
    );
    // The seed's routes, from the plugins.
    for p in &plugins {
        if let Some((path, method, op)) = plugin_route_op(p, keyed) {
            let entry = paths.entry(path).or_insert_with(|| json!({}));
            if let Some(m) = entry.as_object_mut() {
                m.insert(method, op);
            }
        }
    }

    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "eventsift",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Game events over HTTP. Every 2xx is durable. Errors are {\"error\": ...}.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Accepted": {"type": "object", "required": ["event_id"], "properties": {"event_id": {"type": "string", "format": "uuid"}}},
                "Health": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["ok", "unavailable"]},
                    "reason": {"type": "string"},
                    "writer": {"type": "object"}}},
                "UserId": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\u0000-\\u001f\\u007f]+$"},
                "ClientId": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                "DeviceTime": {"description": "RFC 3339 or epoch milliseconds",
                    "oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]},
                "BatchEvent": {"type": "object", "required": ["event_type"], "properties": {
                    "event_type": if types.is_empty() { json!({"type": "string"}) } else { json!({"type": "string", "enum": types}) },
                    "event_id": {"$ref": "#/components/schemas/ClientId"},
                    "client_ts": {"$ref": "#/components/schemas/DeviceTime"},
                    "user_id": {"$ref": "#/components/schemas/UserId"}},
                    "additionalProperties": true,
                    "description": "event_type, event_id, client_ts and user_id are the host's; the other keys are the plugin's fields"},
                "Batch": {"type": "object", "required": ["events"], "additionalProperties": false, "properties": {
                    "sent_at": {"$ref": "#/components/schemas/DeviceTime"},
                    "user_id": {"$ref": "#/components/schemas/UserId"},
                    "events": {"type": "array", "maxItems": state.ingest.max_batch_events,
                               "items": {"$ref": "#/components/schemas/BatchEvent"}}}},
                "BatchResult": {"type": "object", "required": ["status"], "properties": {
                    "status": {"type": "string", "enum": ["accepted", "rejected", "unavailable"]},
                    "event_id": {"type": "string", "format": "uuid"},
                    "error": {"type": "string"}}},
                "BatchReply": {"type": "object", "required": ["accepted", "rejected", "unavailable", "results"], "properties": {
                    "accepted": {"type": "integer"}, "rejected": {"type": "integer"}, "unavailable": {"type": "integer"},
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/BatchResult"}}}},
            },
        },
    });
    if keyed && let Some(root) = doc.as_object_mut() {
        root["components"]["securitySchemes"] = json!({
            "writeKey": {"type": "http", "scheme": "bearer",
                         "description": "A write key of the configuration: Authorization: Bearer <key>"},
            "gameKey": {"type": "apiKey", "in": "header", "name": "X-Game-Key",
                        "description": "With Authorization: base64(HMAC-SHA256(body as sent, secret))"},
        });
        // Event routes need a key; the operations routes do not.
        if let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) {
            for (path, item) in paths.iter_mut() {
                let open = ["/healthz", "/readyz", PATH].contains(&path.as_str());
                if open {
                    continue;
                }
                if let Some(ops) = item.as_object_mut() {
                    for op in ops.values_mut() {
                        if let Some(op) = op.as_object_mut() {
                            op.insert(
                                "security".into(),
                                json!([{"writeKey": []}, {"gameKey": []}]),
                            );
                        }
                    }
                }
            }
        }
    }
    doc
}
