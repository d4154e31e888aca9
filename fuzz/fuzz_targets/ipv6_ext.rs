//! IPv6 extension-header walk (`wire::ipv6::walk`) and the ICMPv6 error builder over any
//! packet: the walk ends inside the payload at a header it does not walk (or after a
//! non-initial fragment), and an error quotes a prefix of the packet within 1280 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::wire::icmpv6::{self, ErrorRepr, Icmpv6Packet};
use mhrouter::wire::ipv6::{Ipv6Packet, MAX_EXT_HEADERS, next_header, walk};
use std::net::Ipv6Addr;

const WALKED: [u8; 4] = [
    next_header::HOP_BY_HOP,
    next_header::ROUTING,
    next_header::FRAGMENT,
    next_header::DEST_OPTS,
];

fuzz_target!(|input: &[u8]| {
    let [first, payload @ ..] = input else {
        return;
    };
    if let Ok(upper) = walk(*first, payload) {
        assert!(upper.offset <= payload.len());
        assert!(upper.offset <= MAX_EXT_HEADERS * 2048);
        let non_initial = upper.fragment.is_some_and(|f| f.is_non_initial());
        assert!(non_initial || !WALKED.contains(&upper.protocol));
    }
    if let Ok(packet) = Ipv6Packet::new_quoted(input) {
        let _ = packet.upper_layer();
        let router = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
        let repr = ErrorRepr {
            src: router,
            dst: packet.src(),
            msg_type: icmpv6::types::PACKET_TOO_BIG,
            code: 0,
            rest_of_header: 1280,
        };
        let _ = icmpv6::may_send_error_about(repr.msg_type, input);
        let mut out = [0u8; 1500];
        let len = icmpv6::build_error(&mut out, &repr, input).expect("1500 bytes hold any error");
        assert!(len <= 1280);
        let error = Ipv6Packet::new_checked(&out[..len]).expect("the error parses");
        let icmp = Icmpv6Packet::new_checked(error.payload()).expect("ICMPv6 header");
        assert!(icmp.verify_checksum(router, packet.src()));
        assert_eq!(icmp.payload(), &input[..icmp.payload().len()]);
    }
});
