//! `template.yaml` as the template tests and the least-privilege test read it: resources,
//! and each function's role as the IAM statements it grants.
//!
//! The YAML reader drops CloudFormation's short tags, so `!GetAtt EventsTable.Arn` reads as
//! `EventsTable.Arn`, `!Sub "${X.Arn}/index/*"` as its text, and `!If [c, a, b]` as a
//! list of three. Resources are compared in the template's own words: a call on the events
//! table names `${EventsTable.Arn}`, one on an index `${EventsTable.Arn}/index/by_time`.

use std::collections::HashMap;

use yaml_rust2::{Yaml, YamlLoader};

pub fn load() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

pub fn resources(t: &Yaml) -> Vec<(String, &Yaml)> {
    t["Resources"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v))
        .collect()
}

/// The logical ids of the functions.
pub fn functions(t: &Yaml) -> Vec<String> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, _)| id)
        .collect()
}

/// Whether `pattern`, an IAM action or resource with `*` wildcards, matches `text`.
pub fn iam_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (pattern, text) = if ignore_case {
        (pattern.to_ascii_lowercase(), text.to_ascii_lowercase())
    } else {
        (pattern.to_string(), text.to_string())
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len()
        || !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// A string, or each string of a list.
pub fn strings(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .map(String::from)
            .collect(),
        _ => y.as_str().map(String::from).into_iter().collect(),
    }
}

/// `!GetAtt X.Arn` (read as `X.Arn`) in the `${X.Arn}` form `!Sub` uses; anything else as is.
fn arn_text(resource: &str) -> String {
    if !resource.contains([':', '$', '/']) && resource.ends_with(".Arn") {
        format!("${{{resource}}}")
    } else {
        resource.to_string()
    }
}

/// One Allow statement of a role, its actions and resources as written.
#[derive(Debug, Clone)]
pub struct Grant {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    /// `StringEquals` condition keys and the values they require, as written.
    pub string_equals: Vec<(String, String)>,
    /// Any condition other than `StringEquals`: such a grant is never taken as allowing.
    pub other_conditions: bool,
}

impl Grant {
    /// Whether this grant allows `action` on `resource`, for a request whose condition
    /// keys have the values in `context`.
    pub fn allows(&self, action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
        !self.other_conditions
            && self.actions.iter().any(|a| iam_match(a, action, true))
            && self.resources.iter().any(|r| iam_match(r, resource, false))
            && self.string_equals.iter().all(|(key, wanted)| {
                context
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(key) && v == wanted)
            })
    }
}

/// `!If [condition, then, else]` as read (a list of three whose first is a condition of the
/// template), resolved with the conditions' values; anything else unchanged.
fn resolve<'a>(t: &Yaml, y: &'a Yaml, conditions: &HashMap<&str, bool>) -> Option<&'a Yaml> {
    if let Some([condition, then, otherwise]) = y.as_vec().map(Vec::as_slice) {
        if let Some(name) = condition.as_str() {
            if !t["Conditions"][name].is_badvalue() {
                let holds = *conditions
                    .get(name)
                    .unwrap_or_else(|| panic!("no value given for the condition {name}"));
                let chosen = if holds { then } else { otherwise };
                return (chosen.as_str() != Some("AWS::NoValue")).then_some(chosen);
            }
        }
    }
    Some(y)
}

/// The role resource a function runs with (its `Role: !GetAtt XRole.Arn`).
pub fn role_of<'a>(t: &'a Yaml, function: &str) -> (String, &'a Yaml) {
    let role = t["Resources"][function]["Properties"]["Role"]
        .as_str()
        .unwrap_or_else(|| panic!("{function} has no Role of its own"));
    let id = role
        .strip_suffix(".Arn")
        .unwrap_or_else(|| panic!("{function}: Role is not a GetAtt of a role: {role}"));
    let resource = &t["Resources"][id];
    assert_eq!(
        resource["Type"].as_str(),
        Some("AWS::IAM::Role"),
        "{function}: {id}"
    );
    (id.to_string(), resource)
}

/// Every Allow statement of a function's role, with the template's conditions resolved.
pub fn grants(t: &Yaml, function: &str, conditions: &HashMap<&str, bool>) -> Vec<Grant> {
    let (id, role) = role_of(t, function);
    let mut out = Vec::new();
    for policy in role["Properties"]["Policies"]
        .as_vec()
        .into_iter()
        .flatten()
    {
        let statements = policy["PolicyDocument"]["Statement"]
            .as_vec()
            .unwrap_or_else(|| panic!("{id}: a policy without statements"));
        for statement in statements {
            let Some(s) = resolve(t, statement, conditions) else {
                continue;
            };
            assert_eq!(s["Effect"].as_str(), Some("Allow"), "{id}: {s:?}");
            let mut string_equals = Vec::new();
            let mut other_conditions = false;
            if let Some(condition) = s["Condition"].as_hash() {
                for (operator, keys) in condition {
                    if operator.as_str() != Some("StringEquals") {
                        other_conditions = true;
                        continue;
                    }
                    for (key, value) in keys.as_hash().into_iter().flatten() {
                        string_equals.push((
                            key.as_str().unwrap().to_string(),
                            value.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
            out.push(Grant {
                actions: strings(&s["Action"]),
                resources: strings(&s["Resource"])
                    .iter()
                    .map(|r| arn_text(r))
                    .collect(),
                string_equals,
                other_conditions,
            });
        }
    }
    out
}

/// The managed policies of a function's role, with the template's conditions resolved.
pub fn managed_policies(t: &Yaml, function: &str, conditions: &HashMap<&str, bool>) -> Vec<String> {
    let (_, role) = role_of(t, function);
    match resolve(t, &role["Properties"]["ManagedPolicyArns"], conditions) {
        Some(list) => strings(list),
        None => Vec::new(),
    }
}

/// Whether a function's role allows `action` on `resource` (in the template's words).
pub fn function_allows(
    t: &Yaml,
    function: &str,
    conditions: &HashMap<&str, bool>,
    action: &str,
    resource: &str,
    context: &[(&str, &str)],
) -> bool {
    grants(t, function, conditions)
        .iter()
        .any(|g| g.allows(action, resource, context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_patterns_match_as_iam_reads_them() {
        assert!(iam_match("ssm:GetParameter", "ssm:getparameter", true));
        assert!(iam_match("ssm:Get*", "ssm:GetParameter", true));
        assert!(iam_match("*", "ssm:GetParameter", true));
        assert!(!iam_match("ssm:GetParameters", "ssm:GetParameter", true));
        assert!(iam_match(
            "arn:*:parameter/*",
            "arn:aws:ssm:parameter/x",
            false
        ));
        assert!(!iam_match(
            "arn:*:parameter/y*",
            "arn:aws:ssm:parameter/x",
            false
        ));
        assert!(!iam_match("ab*ba", "aba", false));
        assert_eq!(arn_text("EventsTable.Arn"), "${EventsTable.Arn}");
        assert_eq!(
            arn_text("${EventsTable.Arn}/index/*"),
            "${EventsTable.Arn}/index/*"
        );
    }
}
