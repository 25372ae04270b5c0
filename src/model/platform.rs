//! Client platforms (PROTOCOL §1).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A client platform. Mini programs, React Native and other web-views log in as `Web`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Android,
    Iphone,
    Ipad,
    Windows,
    Mac,
    Linux,
    Web,
}

impl Platform {
    pub const ALL: [Platform; 7] = [
        Platform::Android,
        Platform::Iphone,
        Platform::Ipad,
        Platform::Windows,
        Platform::Mac,
        Platform::Linux,
        Platform::Web,
    ];

    /// A stable number for storage (the Redis registry).
    pub fn index(self) -> usize {
        Platform::ALL
            .iter()
            .position(|p| *p == self)
            .expect("in ALL")
    }

    /// The lowercase name used by the client protocol and the native admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Android => "android",
            Platform::Iphone => "iphone",
            Platform::Ipad => "ipad",
            Platform::Windows => "windows",
            Platform::Mac => "mac",
            Platform::Linux => "linux",
            Platform::Web => "web",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(())
    }
}
