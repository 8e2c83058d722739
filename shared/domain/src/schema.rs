//! A validator for the subset of JSON Schema that the event catalog uses. The catalog is our
//! own, so a small validator that supports exactly its keywords (and refuses any other, see
//! `check_supported`) is faster to start and smaller than a general one.

use serde::Serialize;
use serde_json::Value;

/// One violation, located by a JSON pointer into the validated document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

const SUPPORTED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "items",
    "minItems",
    "maxItems",
    "format",
    "description",
];

/// Refuses schemas that use a keyword this validator would silently ignore.
pub fn check_supported(schema: &Value, at: &str) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err(format!("{at}: a schema must be an object"));
    };
    for (key, value) in obj {
        if !SUPPORTED.contains(&key.as_str()) {
            return Err(format!("{at}: unsupported keyword {key}"));
        }
        match key.as_str() {
            "properties" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    check_supported(sub, &format!("{at}/properties/{name}"))?;
                }
            }
            "items" => check_supported(value, &format!("{at}/items"))?,
            "additionalProperties" if !value.is_boolean() => {
                return Err(format!("{at}: additionalProperties must be a boolean"))
            }
            "format" if !matches!(value.as_str(), Some("date-time" | "uri")) => {
                return Err(format!("{at}: unsupported format {value}"))
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn validate(schema: &Value, instance: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    walk(schema, instance, &mut String::new(), &mut out);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    let actual = type_name(v);
    actual == expected
        || (expected == "number" && actual == "integer")
        || (expected == "integer"
            && v.as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.is_finite()))
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn walk(schema: &Value, v: &Value, path: &mut String, out: &mut Vec<Violation>) {
    let mut fail = |message: String| {
        out.push(Violation {
            pointer: path.clone(),
            message,
        })
    };
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !allowed.iter().any(|e| type_matches(e, v)) {
            fail(format!(
                "expected {}, found {}",
                allowed.join(" or "),
                type_name(v)
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            fail(format!("must be one of {}", Value::Array(options.clone())));
        }
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if x < min {
                    fail(format!("must be at least {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if x > max {
                    fail(format!("must be at most {max}"));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if len < min {
                    fail(format!("must have at least {min} characters"));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if len > max {
                    fail(format!("must have at most {max} characters"));
                }
            }
            match schema.get("format").and_then(Value::as_str) {
                Some("date-time") if super::event::parse_rfc3339(s).is_none() => {
                    fail("must be an RFC 3339 date-time".into())
                }
                Some("uri") if url::Url::parse(s).is_err() => fail("must be a URI".into()),
                _ => {}
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    fail(format!("must have at least {min} items"));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if (items.len() as u64) > max {
                    fail(format!("must have at most {max} items"));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    walk(item_schema, item, path, out);
                    path.truncate(len);
                }
            }
        }
        Value::Object(fields) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !fields.contains_key(name) {
                    out.push(Violation {
                        pointer: format!("{path}/{}", escape(name)),
                        message: "is required".into(),
                    });
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            for (name, value) in fields {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(name));
                match props.and_then(|p| p.get(name)) {
                    Some(sub) => walk(sub, value, path, out),
                    None if closed => out.push(Violation {
                        pointer: path.clone(),
                        message: "is not allowed".into(),
                    }),
                    None => {}
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object", "required": ["id", "n"], "additionalProperties": false,
            "properties": {
                "id": {"type": "string", "minLength": 2},
                "n": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
                "at": {"type": "string", "format": "date-time"}
            }
        })
    }

    #[test]
    fn accepts_a_valid_instance() {
        let v = json!({"id": "ab", "n": 3, "tags": ["a"], "at": "2026-11-26T12:00:00Z"});
        assert!(validate(&schema(), &v).is_empty());
    }

    #[test]
    fn reports_every_violation_with_its_pointer() {
        let v = json!({"id": "a", "n": -1.5, "tags": ["c"], "at": "yesterday", "x": 1});
        let pointers: Vec<String> = validate(&schema(), &v)
            .into_iter()
            .map(|e| e.pointer)
            .collect();
        assert_eq!(pointers, ["/at", "/id", "/n", "/tags/0", "/x"]);
        let missing = validate(&schema(), &json!({}));
        assert_eq!(missing.len(), 2);
        assert_eq!(missing[0].pointer, "/id");
    }

    #[test]
    fn refuses_unsupported_keywords() {
        assert!(check_supported(&schema(), "").is_ok());
        assert!(check_supported(&json!({"type": "string", "pattern": "x"}), "").is_err());
        assert!(check_supported(&json!({"properties": {"a": {"oneOf": []}}}), "").is_err());
    }
}
