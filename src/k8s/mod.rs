//! Kubernetes objects as etcd stores them (the start of offline decoding for `extract`):
//! `envelope` tells protobuf (`k8s\0` + runtime.Unknown), JSON, CBOR and encrypted values apart.

pub mod decode;
pub mod encryption;
pub mod envelope;
pub mod json;
pub mod schema;
