//! Programs that return at once, attached in place of the real ones by the benchmark's
//! floor measurement (`run --hooks-only`): what the hooks alone cost, so that the
//! benchmark can say how much of the agent's cost is ours and how much the kernel's.

use aya_ebpf::{
    macros::{tracepoint, uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};

#[tracepoint]
pub(crate) fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[uprobe]
pub(crate) fn floor_probe(_ctx: ProbeContext) -> u32 {
    0
}

#[uretprobe]
pub(crate) fn floor_return(_ctx: RetProbeContext) -> u32 {
    0
}
