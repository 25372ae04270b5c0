//! An app's multi-terminal policy, as configured or set by an admin (PROTOCOL §5); what it decides is
//! `registry::policy`'s.

use serde::{Deserialize, Serialize};

/// How platforms are grouped into classes that may be online together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Single,
    Dual,
    Triple,
    Multi,
}

/// An app's multi-terminal policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "one")]
    pub web_instances: u8,
    #[serde(default = "one")]
    pub instances_per_platform: u8,
}

fn default_mode() -> Mode {
    Mode::Dual
}
fn one() -> u8 {
    1
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: default_mode(),
            web_instances: 1,
            instances_per_platform: 1,
        }
    }
}

impl Policy {
    /// Checks the limits; on failure names the field.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=10).contains(&self.web_instances) {
            return Err(("web_instances", "must be between 1 and 10"));
        }
        if !(1..=3).contains(&self.instances_per_platform) {
            return Err(("instances_per_platform", "must be between 1 and 3"));
        }
        Ok(())
    }
}
