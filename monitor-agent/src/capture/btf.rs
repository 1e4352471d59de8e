//! Just enough of a BTF reader to find member offsets of kernel structs.
//!
//! The eBPF programs walk `task_struct → files → fdtable → file → socket → sock`; the byte
//! offsets of those members differ between kernel builds and Rust eBPF has no CO-RE
//! relocations, so the agent reads them from `/sys/kernel/btf/vmlinux` at load time.

use std::collections::HashMap;

use monitor_common::KernelOffsets;
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum BtfError {
    #[error("BTF data is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF has no member {member} in struct {strukt}")]
    NoMember { strukt: String, member: String },
    #[error("member {0} is a bitfield or not byte aligned")]
    Unaligned(String),
    #[error("member {path} is {actual} bytes, expected {expected}")]
    Size {
        path: String,
        actual: u32,
        expected: u32,
    },
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    ty: u32,
    /// Offset in bits.
    bit_offset: u32,
    bitfield: bool,
}

#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// Size for ints, structs, unions, enums; referenced type for modifiers and pointers.
    #[allow(clippy::struct_field_names, reason = "BTF's own name for the field")]
    size_or_type: u32,
    members: Vec<Member>,
    /// Element type and count for arrays.
    array: Option<(u32, u32)>,
}

/// A parsed BTF blob: types indexed by id (id 0 is `void`).
pub(crate) struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

/// One type record at the start of `b` and the bytes it takes, its members included.
fn read_type(b: &[u8]) -> Result<(Type, usize), BtfError> {
    let info = u32_at(b, 4)?;
    let vlen = (info & 0xffff) as usize;
    let kind = (info >> 24) & 0x1f;
    let kind_flag = info >> 31 == 1;
    let mut t = Type {
        name: u32_at(b, 0)?,
        kind,
        size_or_type: u32_at(b, 8)?,
        members: vec![],
        array: None,
    };
    let extra = match kind {
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
        KIND_ARRAY => {
            t.array = Some((u32_at(b, 12)?, u32_at(b, 20)?));
            12
        }
        KIND_STRUCT | KIND_UNION => {
            for i in 0..vlen {
                let m = 12 + i * 12;
                let off = u32_at(b, m + 8)?;
                let (bit_offset, bitfield) = if kind_flag {
                    (off & 0xff_ffff, off >> 24 != 0)
                } else {
                    (off, false)
                };
                t.members.push(Member {
                    name: u32_at(b, m)?,
                    ty: u32_at(b, m + 4)?,
                    bit_offset,
                    bitfield,
                });
            }
            vlen * 12
        }
        KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
        KIND_DATASEC | KIND_ENUM64 => vlen * 12,
        _ => 0,
    };
    Ok((t, 12 + extra))
}

impl Btf {
    pub(crate) fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || data[0] != 0x9f || data[1] != 0xeb {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_bytes = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: vec![],
            array: None,
        }];
        let mut pos = 0usize;
        while pos < types_bytes.len() {
            let (t, len) = read_type(&types_bytes[pos..])?;
            types.push(t);
            pos += len;
        }
        let mut btf = Btf {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name != 0 && !t.members.is_empty() {
                let name = btf.name(t.name).to_string();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.ty(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type;
                }
                _ => break,
            }
        }
        id
    }

    /// Size in bytes of type `id`; arrays of arrays are walked in a loop of bounded depth,
    /// since a malformed blob may make an array its own element.
    fn size_of(&self, mut id: u32) -> u32 {
        let mut count: u32 = 1;
        for _ in 0..32 {
            match self.ty(self.resolve(id)) {
                Some(t) if t.kind == KIND_PTR => return count.saturating_mul(8),
                Some(t) if t.kind == KIND_ARRAY => {
                    let (elem, n) = t.array.unwrap_or((0, 0));
                    count = count.saturating_mul(n);
                    id = elem;
                }
                Some(t) => return count.saturating_mul(t.size_or_type),
                None => return 0,
            }
        }
        0
    }

    /// Finds `member` in the struct/union `id`, looking through anonymous members the way C
    /// name lookup does. Returns the bit offset and member type.
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32, bool)> {
        if depth > 8 {
            return None;
        }
        let t = self.ty(self.resolve(id))?;
        for m in &t.members {
            if m.name == 0 {
                let inner = self.resolve(m.ty);
                if let Some((off, ty, bf)) = self.find_member(inner, member, depth + 1) {
                    return Some((m.bit_offset.saturating_add(off), ty, bf));
                }
            } else if self.name(m.name) == member {
                return Some((m.bit_offset, m.ty, m.bitfield));
            }
        }
        None
    }

    /// Byte offset and size of `strukt.member` (member may be nested in anonymous unions).
    pub(crate) fn member(&self, strukt: &str, member: &str) -> Result<(u32, u32), BtfError> {
        let id = *self
            .structs
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let (bits, ty, bitfield) =
            self.find_member(id, member, 0)
                .ok_or_else(|| BtfError::NoMember {
                    strukt: strukt.into(),
                    member: member.into(),
                })?;
        if bitfield || bits % 8 != 0 {
            return Err(BtfError::Unaligned(format!("{strukt}.{member}")));
        }
        Ok((bits / 8, self.size_of(ty)))
    }

    fn member_sized(&self, strukt: &str, member: &str, size: u32) -> Result<u32, BtfError> {
        let (off, actual) = self.member(strukt, member)?;
        if actual != size {
            return Err(BtfError::Size {
                path: format!("{strukt}.{member}"),
                actual,
                expected: size,
            });
        }
        Ok(off)
    }

    /// The offsets the fd → socket walk needs, each checked for the size the programs read.
    pub(crate) fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        let sk_common = self.member("sock", "__sk_common")?.0;
        let common = |m: &str, size: u32| -> Result<u32, BtfError> {
            Ok(sk_common + self.member_sized("sock_common", m, size)?)
        };
        Ok(KernelOffsets {
            valid: 1,
            task_files: self.member_sized("task_struct", "files", 8)?,
            files_fdt: self.member_sized("files_struct", "fdt", 8)?,
            fdt_max_fds: self.member_sized("fdtable", "max_fds", 4)?,
            fdt_fd: self.member_sized("fdtable", "fd", 8)?,
            file_inode: self.member_sized("file", "f_inode", 8)?,
            file_private_data: self.member_sized("file", "private_data", 8)?,
            inode_mode: self.member_sized("inode", "i_mode", 2)?,
            socket_sk: self.member_sized("socket", "sk", 8)?,
            sk_family: common("skc_family", 2)?,
            sk_num: common("skc_num", 2)?,
            sk_dport: common("skc_dport", 2)?,
            sk_rcv_saddr: common("skc_rcv_saddr", 4)?,
            sk_daddr: common("skc_daddr", 4)?,
            sk_v6_rcv_saddr: common("skc_v6_rcv_saddr", 16)?,
            sk_v6_daddr: common("skc_v6_daddr", 16)?,
            sk_type: self.member_sized("sock", "sk_type", 2)?,
            sk_protocol: self.member_sized("sock", "sk_protocol", 2)?,
            tcp_write_seq: self.member_sized("tcp_sock", "write_seq", 4)?,
        })
    }
}

/// Reads the running kernel's offsets from `/sys/kernel/btf/vmlinux`.
pub(crate) fn running_kernel_offsets() -> anyhow::Result<KernelOffsets> {
    use anyhow::Context;
    let path = "/sys/kernel/btf/vmlinux";
    let data = std::fs::read(path).with_context(|| {
        format!("this kernel exposes no BTF at {path} (needs CONFIG_DEBUG_INFO_BTF=y)")
    })?;
    let btf = Btf::parse(&data).with_context(|| format!("parsing {path}"))?;
    btf.kernel_offsets()
        .context("kernel BTF lacks a member the socket walk needs")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `btf` fuzz target: an array whose element is itself overflowed the
    /// stack when its size was asked for.
    #[test]
    fn an_array_of_itself_has_no_size_and_no_stack_overflow() {
        let btf = Btf {
            types: vec![
                Type {
                    name: 0,
                    kind: 0,
                    size_or_type: 0,
                    members: vec![],
                    array: None,
                },
                Type {
                    name: 0,
                    kind: KIND_ARRAY,
                    size_or_type: 0,
                    members: vec![],
                    array: Some((1, 2)),
                },
            ],
            strings: vec![0],
            structs: HashMap::new(),
        };
        assert_eq!(btf.size_of(1), 0);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, definitely not").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
    }

    /// The running kernel's BTF resolves every member (skipped where there is none).
    #[test]
    fn running_kernel_has_all_members() {
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let o = Btf::parse(&data)
            .expect("parse")
            .kernel_offsets()
            .expect("offsets");
        assert_eq!(o.valid, 1);
        assert!(o.sk_v6_daddr > o.sk_family);
        assert_ne!(o.task_files, 0);
    }
}
