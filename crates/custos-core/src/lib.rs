//! Custos domain model: the names, model schemas, record typestates and masking policy that every
//! other crate speaks in.
//!
//! This crate is pure: no async runtime, no database driver, no HTTP, no wall clock. Time comes in
//! through [`clock::Clock`]; keyed pseudonyms come in through [`record::Pseudonymizer`], which the
//! crypto crate implements. Records move `raw JSON → ValidatedRecord → MaskedRecord`; only
//! [`record::validate_row`] makes a `ValidatedRecord` and only [`record::mask`] makes a
//! `MaskedRecord`, so nothing downstream can hold an unvalidated or unmasked row by mistake.

pub mod alert_tests;
pub mod alerts;
pub mod audit;
pub mod authz;
pub mod batch_codec;
pub mod clock;
pub mod history;
pub mod monitoring;
pub mod names;
pub mod partition;
pub mod pii;
pub mod record;
pub mod roles;
pub mod schema;

pub use audit::{ActorType, AuditEvent, Outcome};
pub use authz::{Action, Grant, GrantError, ModelScope, Principal, parse_grant};
pub use clock::{Clock, FixedClock, SystemClock};
pub use history::{
    Change, ChangeKind, ConfigKind, DiffError, UnknownConfigKind, Weakening, diff,
    masking_weakenings, monitoring_weakenings,
};
pub use monitoring::{
    DriftConfig, MethodSetting, MonitoringConfig, PerformanceConfig, QualityConfig, RetentionConfig,
};
pub use names::{FieldName, ModelName, NameError, TenantName};
pub use partition::{HourBucket, Partition};
pub use record::{
    EventKey, FieldValue, IngestLimits, LabelValue, MaskedRecord, MaskedValue, Pseudonymizer,
    RowError, ValidatedLabel, ValidatedRecord,
};
pub use record::{mask, validate_label, validate_row};
pub use roles::{BuiltinRole, RoleBinding, RoleError, grants_of};
pub use schema::{
    Column, ColumnRole, FeatureSpec, FeatureType, Ff1Alphabet, Masking, MaskingOptions,
    MaskingRule, ModelSchema, ModelSpec, PiiDetection, PredictionSpec, PredictionType, ProfileKind,
    SchemaError, TimeUnit, UnknownFieldPolicy,
};
