//! CustomResourceDefinitions as the API server keeps them in etcd (`apiextensions.k8s.io/v1beta1`
//! JSON, whatever version they were created with) → the `v1` form clusters since 1.22 accept.

use serde_json::{Map, Value, json};

/// The API server keeps CRDs in etcd as `apiextensions.k8s.io/v1beta1`, which clusters since
/// 1.22 no longer accept: the v1 form moves the top-level schema, subresources and printer
/// columns into every version, renames `JSONPath`, nests the conversion webhook, requires a
/// schema per version and `preserveUnknownFields: false` (kept as
/// `x-kubernetes-preserve-unknown-fields` on the schema root).
pub fn v1beta1_to_v1(json: &mut Value) {
    json["apiVersion"] = Value::String("apiextensions.k8s.io/v1".into());
    let Some(spec) = json.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let schema = spec.remove("validation");
    let subresources = spec.remove("subresources");
    let columns = spec.remove("additionalPrinterColumns");
    let preserve = spec.remove("preserveUnknownFields") == Some(Value::Bool(true));
    if let Some(version) = spec.remove("version")
        && spec.get("versions").is_none()
    {
        spec.insert(
            "versions".into(),
            json!([{"name": version, "served": true, "storage": true}]),
        );
    }
    if let Some(Value::Object(conv)) = spec.get_mut("conversion") {
        let client = conv.remove("webhookClientConfig");
        let review = conv.remove("conversionReviewVersions");
        if client.is_some() || review.is_some() {
            let mut webhook = Map::new();
            if let Some(c) = client {
                webhook.insert("clientConfig".into(), c);
            }
            webhook.insert(
                "conversionReviewVersions".into(),
                review.unwrap_or_else(|| json!(["v1beta1"])),
            );
            conv.insert("webhook".into(), Value::Object(webhook));
        }
    }
    let Some(Value::Array(versions)) = spec.get_mut("versions") else {
        return;
    };
    for v in versions.iter_mut().filter_map(Value::as_object_mut) {
        if !v.contains_key("schema")
            && let Some(s) = &schema
        {
            v.insert("schema".into(), s.clone());
        }
        if !v.contains_key("schema") {
            v.insert(
                "schema".into(),
                json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
            );
        } else if preserve
            && let Some(root) = v
                .get_mut("schema")
                .and_then(|s| s.get_mut("openAPIV3Schema"))
                .and_then(Value::as_object_mut)
        {
            root.insert(
                "x-kubernetes-preserve-unknown-fields".into(),
                Value::Bool(true),
            );
        }
        if !v.contains_key("subresources")
            && let Some(s) = &subresources
        {
            v.insert("subresources".into(), s.clone());
        }
        if !v.contains_key("additionalPrinterColumns")
            && let Some(c) = &columns
        {
            v.insert("additionalPrinterColumns".into(), c.clone());
        }
        if let Some(Value::Array(cols)) = v.get_mut("additionalPrinterColumns") {
            for c in cols.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(path) = c.remove("JSONPath") {
                    c.insert("jsonPath".into(), path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use crate::extract::object::Object;
    use crate::extract::reapply::{Options, clean};

    fn obj(key: &str, json: serde_json::Value) -> Object {
        Object::new(key, json)
    }

    #[test]
    fn crds_stored_as_v1beta1_come_out_as_v1() {
        let mut crd = obj(
            "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com",
            json!({"apiVersion":"apiextensions.k8s.io/v1beta1","kind":"CustomResourceDefinition",
                "metadata":{"name":"widgets.example.com","uid":"c"},
                "spec":{"group":"example.com","version":"v1","names":{"plural":"widgets","kind":"Widget"},"scope":"Namespaced",
                    "preserveUnknownFields":true,
                    "validation":{"openAPIV3Schema":{"type":"object"}},
                    "subresources":{"status":{}},
                    "additionalPrinterColumns":[{"name":"Size","type":"integer","JSONPath":".spec.size"}],
                    "versions":[{"name":"v1","served":true,"storage":true},
                                {"name":"v1alpha1","served":false,"storage":false,"schema":{"openAPIV3Schema":{"type":"object","properties":{}}}}],
                    "conversion":{"strategy":"Webhook","webhookClientConfig":{"service":{"name":"conv","namespace":"shop"}},"conversionReviewVersions":["v1"]}},
                "status":{"storedVersions":["v1"]}}),
        );
        clean(&mut crd, &HashSet::new(), &Options::default());
        assert_eq!(
            crd.json,
            json!({"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
                "metadata":{"name":"widgets.example.com"},
                "spec":{"group":"example.com","names":{"plural":"widgets","kind":"Widget"},"scope":"Namespaced",
                    "versions":[
                        {"name":"v1","served":true,"storage":true,
                         "schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}},
                         "subresources":{"status":{}},
                         "additionalPrinterColumns":[{"name":"Size","type":"integer","jsonPath":".spec.size"}]},
                        {"name":"v1alpha1","served":false,"storage":false,
                         "schema":{"openAPIV3Schema":{"type":"object","properties":{},"x-kubernetes-preserve-unknown-fields":true}},
                         "subresources":{"status":{}},
                         "additionalPrinterColumns":[{"name":"Size","type":"integer","jsonPath":".spec.size"}]}],
                    "conversion":{"strategy":"Webhook","webhook":{"clientConfig":{"service":{"name":"conv","namespace":"shop"}},"conversionReviewVersions":["v1"]}}}})
        );
    }
}
