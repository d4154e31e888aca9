//! IPv4 fragmentation (`wire::ipv4::fragment`): for any payload, MTU, starting offset and flags,
//! either nothing is produced (DF set, no room for 8 bytes, or offsets past 64 KiB), or the
//! fragments are valid packets within the MTU whose payloads, in order, give back the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::wire::ipv4::{Ipv4Packet, fragment};

fuzz_target!(|input: &[u8]| {
    let [m0, m1, o0, o1, flags, rest @ ..] = input else {
        return;
    };
    let mtu = usize::from(u16::from_be_bytes([*m0, *m1]) % 9100);
    let offset_units = u16::from_be_bytes([*o0, *o1]) & 0x1fff;
    let (df, mf) = (flags & 1 != 0, flags & 2 != 0);
    let payload = &rest[..rest.len().min(65535 - 20)];
    let total = 20 + payload.len();

    let mut packet = vec![0u8; total];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    let frag_field = offset_units | if df { 0x4000 } else { 0 } | if mf { 0x2000 } else { 0 };
    packet[6..8].copy_from_slice(&frag_field.to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&[192, 168, 0, 10]);
    packet[16..20].copy_from_slice(&[172, 18, 0, 6]);
    packet[20..].copy_from_slice(payload);
    Ipv4Packet::new_unchecked(&mut packet[..]).fill_checksum();

    let start = usize::from(offset_units) * 8;
    let mut out = vec![0u8; mtu.max(20)];
    let mut data = Vec::new();
    let mut index = 0;
    let mut last_mf: Option<bool> = None;
    while let Some(len) = fragment(&packet, mtu, index, &mut out) {
        assert!(len <= mtu, "fragment of {len} bytes over MTU {mtu}");
        let f = Ipv4Packet::new_checked(&out[..len]).expect("a fragment parses");
        assert!(f.verify_checksum());
        assert_eq!(f.total_len(), len);
        assert_eq!(f.frag_offset(), start + data.len(), "fragments are contiguous");
        assert_eq!((f.ident(), f.protocol(), f.ttl()), (0x1234, 17, 64));
        assert!(!f.dont_frag());
        if let Some(prev) = last_mf {
            assert!(prev, "only the last fragment may clear MF");
        }
        last_mf = Some(f.more_frags());
        data.extend_from_slice(f.payload());
        index += 1;
    }
    if index == 0 {
        let room = mtu.saturating_sub(20) & !7;
        assert!(
            df || room == 0 || total + start > 65535,
            "nothing produced for a packet that could be split"
        );
    } else {
        assert_eq!(data, payload, "reassembly gives back the input");
        assert_eq!(last_mf, Some(mf), "the last fragment keeps the original MF");
    }
});
