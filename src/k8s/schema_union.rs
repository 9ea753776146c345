//! The union of several releases of one protobuf schema: every file, message, field and enum value
//! any of them has. Kubernetes (and OpenShift) never reuse a field number, so a message's fields
//! across releases fit side by side; a number whose name or type differs between releases is a
//! [`Conflict`] and the union is refused. Used by `build.rs` (Kubernetes v1.30 … v1.35, compiled
//! in) and at run time for several `--proto-path` directories.

use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};

/// Two releases disagree about a field or enum value with the same number.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The message (or enum) it sits in, `k8s.io.api.core.v1.PodSpec`.
    pub within: String,
    /// The field or value number.
    pub number: i32,
    /// How `base` has it.
    pub base: String,
    /// How the added release has it.
    pub added: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} field {}: {} in one release, {} in another",
            self.within, self.number, self.base, self.added
        )
    }
}

/// Adds to `base` whatever `other` has that `base` lacks. `base` keeps its own definitions (pass
/// the newest release as `base`); on conflicts nothing is reported as merged and every conflict
/// is returned.
pub fn union(base: &mut FileDescriptorSet, other: FileDescriptorSet) -> Result<(), Vec<Conflict>> {
    let mut merged = base.clone();
    let mut conflicts = Vec::new();
    for file in other.file {
        match merged.file.iter_mut().find(|f| f.name == file.name) {
            None => merged.file.push(file),
            Some(into) => merge_file(into, file, &mut conflicts),
        }
    }
    if conflicts.is_empty() {
        *base = merged;
        Ok(())
    } else {
        Err(conflicts)
    }
}

fn merge_file(into: &mut FileDescriptorProto, from: FileDescriptorProto, out: &mut Vec<Conflict>) {
    for dep in from.dependency {
        if !into.dependency.contains(&dep) {
            into.dependency.push(dep);
        }
    }
    let scope = from.package.unwrap_or_default();
    merge_messages(&mut into.message_type, from.message_type, &scope, out);
    merge_enums(&mut into.enum_type, from.enum_type, &scope, out);
}

fn merge_messages(
    into: &mut Vec<DescriptorProto>,
    from: Vec<DescriptorProto>,
    scope: &str,
    out: &mut Vec<Conflict>,
) {
    for message in from {
        match into.iter_mut().find(|m| m.name == message.name) {
            None => into.push(message),
            Some(have) => merge_message(have, message, scope, out),
        }
    }
}

fn merge_message(
    into: &mut DescriptorProto,
    from: DescriptorProto,
    scope: &str,
    out: &mut Vec<Conflict>,
) {
    let within = format!("{scope}.{}", into.name());
    for field in from.field {
        let same_number = into.field.iter().find(|f| f.number == field.number);
        let same_name = into.field.iter().find(|f| f.name == field.name);
        match (same_number, same_name) {
            (None, None) => into.field.push(field),
            (Some(have), _) if shape(have) == shape(&field) => {}
            (Some(have), _) => out.push(Conflict {
                within: within.clone(),
                number: field.number(),
                base: shape(have),
                added: shape(&field),
            }),
            // the same name under another number: two fields of one name cannot coexist
            (None, Some(have)) => out.push(Conflict {
                within: within.clone(),
                number: field.number(),
                base: format!("{} (number {})", shape(have), have.number()),
                added: shape(&field),
            }),
        }
    }
    merge_messages(&mut into.nested_type, from.nested_type, &within, out);
    merge_enums(&mut into.enum_type, from.enum_type, &within, out);
}

/// What must agree between releases for a field number: its name, type and cardinality.
fn shape(f: &FieldDescriptorProto) -> String {
    let kind = match f.type_name.as_deref() {
        Some(t) => t.trim_start_matches('.').to_owned(),
        None => format!("{:?}", f.r#type()).to_ascii_lowercase(),
    };
    format!("{:?} {kind} {}", f.label(), f.name()).to_ascii_lowercase()
}

fn merge_enums(
    into: &mut Vec<EnumDescriptorProto>,
    from: Vec<EnumDescriptorProto>,
    scope: &str,
    out: &mut Vec<Conflict>,
) {
    for e in from {
        let Some(have) = into.iter_mut().find(|h| h.name == e.name) else {
            into.push(e);
            continue;
        };
        let within = format!("{scope}.{}", have.name());
        for value in e.value {
            match have.value.iter().find(|v| v.number == value.number) {
                None => have.value.push(value),
                Some(v) if v.name == value.name => {}
                Some(v) => out.push(Conflict {
                    within: within.clone(),
                    number: value.number(),
                    base: v.name().to_owned(),
                    added: value.name().to_owned(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::field_descriptor_proto::{Label, Type};

    fn field(name: &str, number: i32, ty: Type) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    fn set(messages: Vec<DescriptorProto>) -> FileDescriptorSet {
        FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("a/generated.proto".into()),
                package: Some("a.v1".into()),
                message_type: messages,
                ..Default::default()
            }],
        }
    }

    fn message(name: &str, fields: Vec<FieldDescriptorProto>) -> DescriptorProto {
        DescriptorProto {
            name: Some(name.into()),
            field: fields,
            ..Default::default()
        }
    }

    #[test]
    fn fields_and_messages_of_every_release_are_kept() {
        let mut new = set(vec![message(
            "Spec",
            vec![field("a", 1, Type::String), field("c", 3, Type::Int64)],
        )]);
        let old = set(vec![
            message(
                "Spec",
                vec![field("a", 1, Type::String), field("b", 2, Type::Bool)],
            ),
            message("Gone", vec![field("x", 1, Type::String)]),
        ]);
        union(&mut new, old).unwrap();
        let file = &new.file[0];
        let names: Vec<_> = file.message_type[0]
            .field
            .iter()
            .map(|f| f.name())
            .collect();
        assert_eq!(names, ["a", "c", "b"]);
        assert_eq!(file.message_type[1].name(), "Gone");
    }

    #[test]
    fn a_number_that_changed_meaning_is_refused_and_nothing_is_merged() {
        let mut new = set(vec![message("Spec", vec![field("a", 1, Type::String)])]);
        let before = new.clone();
        let old = set(vec![message(
            "Spec",
            vec![field("a", 1, Type::Int32), field("b", 2, Type::Bool)],
        )]);
        let conflicts = union(&mut new, old).unwrap_err();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].within, "a.v1.Spec");
        assert_eq!(conflicts[0].number, 1);
        assert!(
            conflicts[0].to_string().contains("int32"),
            "{}",
            conflicts[0]
        );
        assert_eq!(new, before);
        let renamed = set(vec![message("Spec", vec![field("a", 9, Type::String)])]);
        assert_eq!(union(&mut new, renamed).unwrap_err()[0].number, 9);
    }
}
