//! The registry's Lua scripts (`lua/`), each with the shared prelude in front.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/prelude.lua"),
            include_str!($file)
        ))
    };
}

pub(super) struct Scripts {
    pub(super) admit: Script,
    /// `detach_many` allowed keys of several slots of one master (Redis ≥ 7): on a cluster, one call per
    /// master rather than one per group of users.
    pub(super) detach_across: Script,
    pub(super) attach: Script,
    pub(super) detach_many: Script,
    pub(super) remove: Script,
    pub(super) remove_user: Script,
    pub(super) set_sig: Script,
    pub(super) reap: Script,
    pub(super) node_scan: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            admit: script!("lua/admit.lua"),
            detach_across: Script::new(concat!(
                "#!lua flags=allow-cross-slot-keys\n",
                include_str!("lua/prelude.lua"),
                include_str!("lua/detach_many.lua")
            )),
            attach: script!("lua/attach.lua"),
            detach_many: script!("lua/detach_many.lua"),
            remove: script!("lua/remove.lua"),
            remove_user: script!("lua/remove_user.lua"),
            set_sig: script!("lua/set_sig.lua"),
            reap: script!("lua/reap.lua"),
            node_scan: script!("lua/node_scan.lua"),
        }
    }
}
