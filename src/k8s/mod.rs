//! Kubernetes objects as etcd stores them (the start of offline decoding for `extract`):
//! `envelope` tells protobuf (`k8s\0` + runtime.Unknown), JSON, CBOR and encrypted values apart.

pub mod decode;
pub mod encryption;
pub(crate) mod envelope;
pub(crate) mod json;
pub mod schema;
pub mod schema_union;
pub mod unknown;
