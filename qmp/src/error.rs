//! QMP error classes and the error object a command fails with.
//!
//! Owns the mapping from a failure to what goes on the wire as
//! `{"class": ..., "desc": ...}`, and the fixed messages QEMU clients
//! match on. It never decides *whether* something failed.

use std::fmt;

use serde_json::{json, Value};

/// The `class` member of a QMP error reply. QEMU 2.8 has exactly these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceEncrypted,
    DeviceNotActive,
    DeviceNotFound,
    KVMMissingCap,
}

impl ErrorClass {
    /// The class name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceEncrypted => "DeviceEncrypted",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KVMMissingCap => "KVMMissingCap",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed QMP command: a class and a human-readable description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.desc)
    }
}

impl std::error::Error for QmpError {}

impl QmpError {
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> Self {
        QmpError {
            class,
            desc: desc.into(),
        }
    }

    /// The usual case: a `GenericError` with a free-form message.
    pub fn generic(desc: impl Into<String>) -> Self {
        Self::new(ErrorClass::GenericError, desc)
    }

    /// The value of the `error` member of a reply.
    pub fn to_json(&self) -> Value {
        json!({ "class": self.class.as_str(), "desc": self.desc })
    }

    // Messages QEMU shares between many commands. Clients and test suites
    // compare these strings, so each wording is fixed here, once.

    pub fn base_not_found(base: &str) -> Self {
        Self::generic(format!("Base '{base}' not found"))
    }

    pub fn bus_no_hotplug(bus: &str) -> Self {
        Self::generic(format!("Bus '{bus}' does not support hotplugging"))
    }

    pub fn device_has_no_medium(device: &str) -> Self {
        Self::generic(format!("Device '{device}' has no medium"))
    }

    pub fn device_init_failed(device: &str) -> Self {
        Self::generic(format!("Device '{device}' could not be initialized"))
    }

    pub fn device_in_use(device: &str) -> Self {
        Self::generic(format!("Device '{device}' is in use"))
    }

    pub fn device_no_hotplug(device: &str) -> Self {
        Self::generic(format!("Device '{device}' does not support hotplugging"))
    }

    /// A named device or block backend does not exist (class DeviceNotFound).
    pub fn device_not_found(device: &str) -> Self {
        Self::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{device}' not found"),
        )
    }

    /// An image needs a key before it can be used (class DeviceEncrypted).
    pub fn device_encrypted(device_or_node: &str, filename: &str) -> Self {
        Self::new(
            ErrorClass::DeviceEncrypted,
            format!("'{device_or_node}' ({filename}) is encrypted"),
        )
    }

    /// No block job runs on the device (class DeviceNotActive).
    pub fn block_job_not_found(device: &str) -> Self {
        Self::new(
            ErrorClass::DeviceNotActive,
            format!("Block job '{device}' not found"),
        )
    }

    /// `balloon`/`query-balloon` without a balloon device.
    pub fn balloon_not_active() -> Self {
        Self::new(
            ErrorClass::DeviceNotActive,
            "No balloon device has been activated",
        )
    }

    /// `balloon` under KVM without a synchronous MMU.
    pub fn balloon_kvm_missing_cap() -> Self {
        Self::new(
            ErrorClass::KVMMissingCap,
            "Using KVM without synchronous MMU, balloon unavailable",
        )
    }

    pub fn fd_not_found(name: &str) -> Self {
        Self::generic(format!("File descriptor named '{name}' not found"))
    }

    pub fn fd_not_supplied() -> Self {
        Self::generic("No file descriptor supplied via SCM_RIGHTS")
    }

    pub fn feature_disabled(feature: &str) -> Self {
        Self::generic(format!("The feature '{feature}' is not enabled"))
    }

    pub fn invalid_block_format(format: &str) -> Self {
        Self::generic(format!("Invalid block format '{format}'"))
    }

    /// An unknown parameter, or an enum value that is not in the enum.
    pub fn invalid_parameter(name: &str) -> Self {
        Self::generic(format!("Invalid parameter '{name}'"))
    }

    /// A parameter of the wrong JSON type; `expected` is QEMU's word for the
    /// type ("string", "integer", "boolean", "number", "QDict", "list", or
    /// an alternate's name).
    pub fn invalid_parameter_type(name: &str, expected: &str) -> Self {
        Self::generic(format!(
            "Invalid parameter type for '{name}', expected: {expected}"
        ))
    }

    /// A parameter of the right type but a value outside what it accepts.
    pub fn invalid_parameter_value(name: &str, expected: &str) -> Self {
        Self::generic(format!("Parameter '{name}' expects {expected}"))
    }

    pub fn invalid_password() -> Self {
        Self::generic("Password incorrect")
    }

    pub fn io_error() -> Self {
        Self::generic("An IO error has occurred")
    }

    pub fn json_parsing() -> Self {
        Self::generic("Invalid JSON syntax")
    }

    pub fn migration_active() -> Self {
        Self::generic("There's a migration process in progress")
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::generic(format!("Parameter '{name}' is missing"))
    }

    pub fn permission_denied() -> Self {
        Self::generic("Insufficient permission to perform this operation")
    }

    pub fn property_value_bad(object: &str, property: &str, value: &str) -> Self {
        Self::generic(format!(
            "Property '{object}.{property}' doesn't take value '{value}'"
        ))
    }

    pub fn property_value_out_of_range(
        object: &str,
        property: &str,
        value: i64,
        min: i64,
        max: i64,
    ) -> Self {
        Self::generic(format!(
            "Property {object}.{property} doesn't take value {value} \
             (minimum: {min}, maximum: {max})"
        ))
    }

    /// The request lacks a required member (`what` is "execute"); QEMU's
    /// monitor never reaches its "object" variant because it rejects
    /// non-objects as a JSON syntax error first.
    pub fn qmp_bad_input_object(what: &str) -> Self {
        Self::generic(format!("Expected '{what}' in QMP input"))
    }

    pub fn qmp_bad_input_object_member(member: &str, expects: &str) -> Self {
        Self::generic(format!(
            "QMP input object member '{member}' expects '{expects}'"
        ))
    }

    /// A member nobody asked for: in the request object itself or anywhere
    /// inside the arguments.
    pub fn qmp_extra_member(member: &str) -> Self {
        Self::generic(format!("QMP input object member '{member}' is unexpected"))
    }

    pub fn set_passwd_failed() -> Self {
        Self::generic("Could not set password")
    }

    pub fn undefined_error() -> Self {
        Self::generic("An undefined error has occurred")
    }

    pub fn unsupported() -> Self {
        Self::generic("this feature or command is not currently supported")
    }

    pub fn replay_not_supported(feature: &str) -> Self {
        Self::generic(format!(
            "Record/replay feature is not supported for '{feature}'"
        ))
    }

    // Dispatch-level errors (monitor and dispatcher, not commands).

    pub fn command_not_found(command: &str) -> Self {
        Self::new(
            ErrorClass::CommandNotFound,
            format!("The command {command} has not been found"),
        )
    }

    pub fn command_disabled(command: &str) -> Self {
        Self::generic(format!(
            "The command {command} has been disabled for this instance"
        ))
    }

    /// `qmp_capabilities` sent again after negotiation.
    pub fn capabilities_already_negotiated(command: &str) -> Self {
        Self::new(
            ErrorClass::CommandNotFound,
            format!("Capabilities negotiation is already complete, command '{command}' ignored"),
        )
    }

    /// Any other command sent before `qmp_capabilities`.
    pub fn capabilities_expected(command: &str) -> Self {
        Self::new(
            ErrorClass::CommandNotFound,
            format!(
                "Expecting capabilities negotiation with 'qmp_capabilities' before command '{command}'"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_json_has_class_and_desc() {
        let e = QmpError::generic("boom");
        assert_eq!(
            e.to_json(),
            json!({"class": "GenericError", "desc": "boom"})
        );
    }

    #[test]
    fn device_not_found_uses_its_own_class() {
        let e = QmpError::device_not_found("ide0-hd9");
        assert_eq!(e.class, ErrorClass::DeviceNotFound);
        assert_eq!(e.desc, "Device 'ide0-hd9' not found");
    }

    #[test]
    fn parameter_messages_match_qemu_wording() {
        assert_eq!(
            QmpError::missing_parameter("device").desc,
            "Parameter 'device' is missing"
        );
        assert_eq!(
            QmpError::invalid_parameter_type("force", "boolean").desc,
            "Invalid parameter type for 'force', expected: boolean"
        );
        assert_eq!(
            QmpError::invalid_parameter_value("granularity", "uint32_t").desc,
            "Parameter 'granularity' expects uint32_t"
        );
        assert_eq!(
            QmpError::invalid_parameter("bogus").desc,
            "Invalid parameter 'bogus'"
        );
        assert_eq!(
            QmpError::feature_disabled("spice").desc,
            "The feature 'spice' is not enabled"
        );
    }

    #[test]
    fn command_not_found_has_command_not_found_class() {
        let e = QmpError::command_not_found("foo");
        assert_eq!(e.class, ErrorClass::CommandNotFound);
        assert_eq!(e.desc, "The command foo has not been found");
    }

    #[test]
    fn capability_errors_match_qemu_wording() {
        assert_eq!(
            QmpError::capabilities_expected("query-name").desc,
            "Expecting capabilities negotiation with 'qmp_capabilities' before command 'query-name'"
        );
        assert_eq!(
            QmpError::capabilities_already_negotiated("qmp_capabilities").desc,
            "Capabilities negotiation is already complete, command 'qmp_capabilities' ignored"
        );
    }

    #[test]
    fn class_names_are_wire_names() {
        assert_eq!(ErrorClass::KVMMissingCap.as_str(), "KVMMissingCap");
        assert_eq!(ErrorClass::DeviceNotActive.to_string(), "DeviceNotActive");
    }
}
