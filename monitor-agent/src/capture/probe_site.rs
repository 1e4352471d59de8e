//! Where on a function a uprobe costs least.
//!
//! A uprobe replaces one instruction with a breakpoint. The kernel then either emulates the
//! displaced instruction (x86-64: `push` of a register, near `call`/`jmp`/`jcc` with a
//! relative target, the one-byte `nop`) or executes it out of line, single-stepping a copy
//! with a second trap. Under a hypervisor that second trap is what costs: measured on this
//! project's CI machines, about 10 µs per hit single-stepped against under 1 µs emulated
//! (`cargo xtask bench --case "probe cost"`, BENCHMARKS.md). Function entries rarely start with an
//! emulated instruction (`sub $N,%rsp`, Go's stack check `cmp`), so the agent decodes the
//! function and moves the probe to the first emulated instruction every call passes through,
//! where the registers the probe reads still hold the arguments.
//!
//! Everything here reads code from workload files: it decodes a bounded number of bytes,
//! never recurses, and each question costs time linear in the function's length.

use std::collections::HashSet;

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess, Register,
};

/// Longest function decoded; beyond it the probe stays at the entry.
pub(crate) const MAX_FUNCTION_BYTES: usize = 256 * 1024;

/// The System V argument registers the OpenSSL probes read (`SSL*`, buffer, count pointer).
pub(crate) const C_ARGS: &[Register] = &[Register::RDI, Register::RSI, Register::RCX];
/// Go's ABIInternal registers the crypto/tls probes read: receiver, slice pointer and length,
/// and R14, the current goroutine.
pub(crate) const GO_ARGS: &[Register] =
    &[Register::RAX, Register::RBX, Register::RCX, Register::R14];

/// Whether the kernel emulates the instruction `bytes` (exactly one instruction) when a
/// uprobe sits on it: the opcodes `arch/x86/kernel/uprobes.c` handles without
/// single-stepping, with no prefix the kernel would refuse (it only takes REX.B on `push`).
pub(crate) fn is_emulated(bytes: &[u8]) -> bool {
    matches!(
        bytes,
        [0xe8 | 0xe9, _, _, _, _]
            | [0xeb | 0x70..=0x7f, _]
            | [0x0f, 0x80..=0x8f, _, _, _, _]
            | [0x90 | 0x50..=0x57]
            | [0x41, 0x50..=0x57]
    )
}

/// A probe location, relative to the function's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Site {
    pub offset: u64,
    /// False when no emulated site was found and the probe sits on the entry.
    pub emulated: bool,
}

/// What a probe at the site relies on.
#[derive(Clone, Copy)]
pub(crate) struct Needs<'r> {
    /// Registers that must still hold the function's arguments.
    pub registers: &'r [Register],
    /// The return address must still be at `(%rsp)`: a uretprobe shares the site.
    pub return_address: bool,
}

/// One function's instructions, decoded once.
pub(crate) struct Function {
    code: Vec<Instruction>,
    bytes: Vec<u8>,
    /// Whether `bytes` is the whole function (its size was known); when it is not, only its
    /// first instruction can be proven to run exactly once per call.
    whole: bool,
}

impl Function {
    /// Decodes `bytes` as a function starting at address 0; stops at the first byte that
    /// is not an instruction. `whole` says whether `bytes` spans the function exactly; a
    /// function cut at `MAX_FUNCTION_BYTES` is not whole.
    pub(crate) fn decode(bytes: &[u8], whole: bool) -> Function {
        let whole = whole && bytes.len() <= MAX_FUNCTION_BYTES;
        let bytes = &bytes[..bytes.len().min(MAX_FUNCTION_BYTES)];
        let mut code = Vec::new();
        let mut decoder = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
        while decoder.can_decode() {
            let ins = decoder.decode();
            if ins.is_invalid() {
                break;
            }
            code.push(ins);
        }
        Function {
            code,
            bytes: bytes.to_vec(),
            whole,
        }
    }

    fn bytes_of(&self, ins: &Instruction) -> &[u8] {
        let start = ins.ip() as usize;
        self.bytes.get(start..start + ins.len()).unwrap_or(&[])
    }

    fn index_of(&self, ip: u64) -> Option<usize> {
        self.code.binary_search_by_key(&ip, Instruction::ip).ok()
    }

    /// Offsets of the RET instructions (for probes that stand in for a uretprobe).
    pub(crate) fn returns(&self) -> Vec<u64> {
        self.code
            .iter()
            .filter(|i| i.flow_control() == FlowControl::Return)
            .map(Instruction::ip)
            .collect()
    }

    /// The cheapest place for an entry probe that reads `needs`: the first emulated
    /// instruction on the straight path from the entry that (a) no other path joins, (b) is
    /// on no loop (it runs once per call), and (c) comes before anything that writes a
    /// needed register. The entry itself when there is none.
    pub(crate) fn entry_site(&self, needs: Needs<'_>) -> Site {
        let entry = Site {
            offset: 0,
            emulated: false,
        };
        let joined = self.branch_targets();
        let mut info = InstructionInfoFactory::new();
        for (i, ins) in self.code.iter().enumerate() {
            let first = i == 0;
            if !first && (!self.whole || joined.contains(&ins.ip())) {
                return entry;
            }
            if is_emulated(self.bytes_of(ins)) && (first || !self.on_loop(i)) {
                return Site {
                    offset: ins.ip(),
                    emulated: true,
                };
            }
            let flow = ins.flow_control();
            if !matches!(flow, FlowControl::Next | FlowControl::ConditionalBranch)
                || writes_any(&mut info, ins, needs)
            {
                return entry;
            }
        }
        entry
    }

    /// Every in-function target of a direct branch.
    fn branch_targets(&self) -> HashSet<u64> {
        self.code
            .iter()
            .filter_map(|ins| self.local_target(ins))
            .collect()
    }

    /// The target of a direct jump inside this function (calls return, so they are not
    /// edges of the function's own control flow).
    fn local_target(&self, ins: &Instruction) -> Option<u64> {
        match ins.flow_control() {
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                let t = ins.near_branch_target();
                (self.index_of(t).is_some()).then_some(t)
            }
            _ => None,
        }
    }

    /// Whether instruction `at` can run again within one call: a walk of the control flow
    /// from its successors comes back to it. Indirect jumps (jump tables) are taken to leave
    /// the function, which they do in practice from a prologue.
    fn on_loop(&self, at: usize) -> bool {
        let mut seen = vec![false; self.code.len()];
        let mut todo = self.successors(at);
        while let Some(i) = todo.pop() {
            if i == at {
                return true;
            }
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            todo.extend(self.successors(i));
        }
        false
    }

    fn successors(&self, i: usize) -> Vec<usize> {
        let ins = &self.code[i];
        let next = (i + 1 < self.code.len()).then_some(i + 1);
        let target = self.local_target(ins).and_then(|t| self.index_of(t));
        match ins.flow_control() {
            FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => {
                next.into_iter().collect()
            }
            FlowControl::ConditionalBranch => next.into_iter().chain(target).collect(),
            FlowControl::UnconditionalBranch => target.into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// The target of the first direct call on the straight path from the entry, when no
    /// instruction before it writes `kept` (jumps that leave the path are allowed).
    pub(crate) fn first_call(&self, kept: &[Register]) -> Option<(usize, u64)> {
        let needs = Needs {
            registers: kept,
            return_address: false,
        };
        let mut info = InstructionInfoFactory::new();
        for (i, ins) in self.code.iter().enumerate() {
            match ins.flow_control() {
                FlowControl::Call if ins.is_call_near() => {
                    return Some((i, ins.near_branch_target()));
                }
                FlowControl::Next | FlowControl::ConditionalBranch
                    if !writes_any(&mut info, ins, needs) => {}
                _ => return None,
            }
        }
        None
    }

    /// Whether the function only wraps one call: from the entry straight to a direct call
    /// with all of `kept` untouched, then straight to a RET with no other call or jump.
    /// Its callee then takes the same arguments and produces the same result.
    pub(crate) fn thin_wrapper_of(&self, kept: &[Register]) -> Option<u64> {
        let (at, target) = self.first_call(kept)?;
        if self.code[..at]
            .iter()
            .any(|i| i.flow_control() != FlowControl::Next)
        {
            return None;
        }
        for ins in &self.code[at + 1..] {
            match ins.flow_control() {
                FlowControl::Next => {}
                FlowControl::Return => return Some(target),
                _ => return None,
            }
        }
        None
    }
}

/// Whether `ins` may change one of the needed registers (any part of it), or `%rsp` when
/// the return address must stay on top of the stack.
fn writes_any(info: &mut InstructionInfoFactory, ins: &Instruction, needs: Needs<'_>) -> bool {
    info.info(ins).used_registers().iter().any(|u| {
        let written = !matches!(
            u.access(),
            OpAccess::Read | OpAccess::CondRead | OpAccess::None
        );
        let reg = u.register().full_register();
        written
            && (needs.registers.contains(&reg) || (needs.return_address && reg == Register::RSP))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const C_ENTRY: Needs<'static> = Needs {
        registers: C_ARGS,
        return_address: true,
    };
    const GO_ENTRY: Needs<'static> = Needs {
        registers: GO_ARGS,
        return_address: false,
    };

    #[test]
    fn emulated_opcodes_are_exactly_the_kernels() {
        assert!(is_emulated(&[0x55])); // push %rbp
        assert!(is_emulated(&[0x41, 0x55])); // push %r13
        assert!(is_emulated(&[0x90]));
        assert!(is_emulated(&[0x78, 0x2f])); // js
        assert!(is_emulated(&[0xe8, 0, 0, 0, 0])); // call rel32
        assert!(!is_emulated(&[0x48, 0x83, 0xec, 0x18])); // sub $0x18,%rsp
        assert!(!is_emulated(&[0xc3])); // ret
        assert!(!is_emulated(&[0x5d])); // pop %rbp
        assert!(!is_emulated(&[0x66, 0x90])); // xchg %ax,%ax: a prefix
        assert!(!is_emulated(&[0x48, 0x55])); // push with REX.W
        assert!(!is_emulated(&[0xf3, 0x0f, 0x1e, 0xfa])); // endbr64
    }

    /// Debian's OpenSSL 3.0 `SSL_read`: `sub` first, so no site before the stack moves.
    #[test]
    fn a_stack_adjustment_first_leaves_the_entry() {
        let code = [
            0x48, 0x83, 0xec, 0x18, // sub $0x18,%rsp
            0x85, 0xd2, // test %edx,%edx
            0x78, 0x05, // js +5
            0x48, 0x89, 0xe1, // mov %rsp,%rcx
            0x90, 0x90, 0x90, 0x90, 0x90, // padding the js lands in
            0xc3, // ret
        ];
        let f = Function::decode(&code, true);
        assert_eq!(f.entry_site(C_ENTRY).offset, 0);
        assert!(!f.entry_site(C_ENTRY).emulated);
        // Without a uretprobe the `js` (args intact) would do.
        let no_ret = Needs {
            return_address: false,
            ..C_ENTRY
        };
        assert_eq!(f.entry_site(no_ret).offset, 6);
    }

    #[test]
    fn push_first_is_the_entry_and_endbr_is_skipped() {
        let f = Function::decode(&[0x41, 0x55, 0x41, 0x54, 0xc3], false);
        assert_eq!(
            f.entry_site(C_ENTRY),
            Site {
                offset: 0,
                emulated: true
            }
        );
        // endbr64; push %rbp — only provable when the whole function is known.
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x5d, 0xc3];
        assert_eq!(Function::decode(&code, true).entry_site(C_ENTRY).offset, 4);
        assert!(!Function::decode(&code, false).entry_site(C_ENTRY).emulated);
    }

    /// Go's prologue: `cmp 0x10(%r14),%rsp; jbe more; push %rbp; ...; more: call
    /// morestack; jmp entry`. The `jbe` runs again after the stack grows; the `push` does not.
    #[test]
    fn go_entry_is_past_the_stack_check() {
        let code = [
            0x49, 0x3b, 0x66, 0x10, // 0: cmp 0x10(%r14),%rsp
            0x76, 0x06, // 4: jbe 0xc
            0x55, // 6: push %rbp
            0x48, 0x89, 0xe5, // 7: mov %rsp,%rbp
            0x5d, // a: pop %rbp
            0xc3, // b: ret
            0xe8, 0, 0, 0, 0, // c: call (morestack)
            0xeb, 0xed, // 11: jmp 0
        ];
        let f = Function::decode(&code, true);
        assert_eq!(
            f.entry_site(GO_ENTRY),
            Site {
                offset: 6,
                emulated: true
            }
        );
        assert_eq!(f.returns(), vec![0xb]);
        // The same prologue writing the slice length first: the entry stays.
        let mut clobbering = code.to_vec();
        clobbering.splice(4..4, [0x31, 0xc9]); // xor %ecx,%ecx
        clobbering[7] = 0x06; // jbe still lands on the call
        let f = Function::decode(&clobbering, true);
        assert!(!f.entry_site(GO_ENTRY).emulated);
    }

    #[test]
    fn a_site_another_path_joins_is_refused() {
        let code = [
            0x85, 0xc0, // 0: test %eax,%eax
            0x74, 0x01, // 2: je 5
            0x90, // 4: nop
            0x90, // 5: nop (joined by the je)
            0xc3,
        ];
        let f = Function::decode(&code, true);
        // The je itself is the first emulated instruction and is on no loop.
        assert_eq!(f.entry_site(GO_ENTRY).offset, 2);
        let looping = [
            0x85, 0xc0, // 0: test %eax,%eax
            0x90, // 2: nop, joined by the jump back
            0xff, 0xc0, // 3: inc %eax
            0xeb, 0xfb, // 5: jmp 2
        ];
        let f = Function::decode(&looping, true);
        assert!(!f.entry_site(GO_ENTRY).emulated);
    }

    #[test]
    fn thin_wrappers_and_their_callee() {
        // SSL_read_ex: sub $8,%rsp; call +0x10; xor %edx,%edx; test; cmovs; add; ret
        let ex = [
            0x48, 0x83, 0xec, 0x08, 0xe8, 0x10, 0, 0, 0, 0x31, 0xd2, 0x85, 0xc0, 0x0f, 0x48, 0xc2,
            0x48, 0x83, 0xc4, 0x08, 0xc3,
        ];
        let f = Function::decode(&ex, true);
        assert_eq!(
            f.thin_wrapper_of(&[Register::RDI, Register::RSI, Register::RDX, Register::RCX]),
            Some(0x19)
        );
        // A wrapper that sets the fourth argument is not passing its own through.
        let mut set_rcx = ex.to_vec();
        set_rcx.splice(4..4, [0x48, 0x89, 0xe1]); // mov %rsp,%rcx
        let f = Function::decode(&set_rcx, true);
        assert_eq!(
            f.thin_wrapper_of(&[Register::RDI, Register::RSI, Register::RDX, Register::RCX]),
            None
        );
        // ...but its first call still takes the first two untouched.
        assert_eq!(
            f.first_call(&[Register::RDI, Register::RSI]),
            Some((2, 0x1c))
        );
        assert!(Function::decode(&[], true).thin_wrapper_of(&[]).is_none());
    }
}
