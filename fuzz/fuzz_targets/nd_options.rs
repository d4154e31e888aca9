//! Neighbour discovery parsing (`wire::ndisc::NdPacket::parse`): any message body parses or is
//! refused without panicking, and what parses builds again into a packet that parses to the
//! same message and options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::wire::icmpv6::Icmpv6Packet;
use mhrouter::wire::ipv6::{self, Ipv6Packet, Ipv6Repr, next_header};
use mhrouter::wire::ndisc::{self, NdOption, NdPacket, NdRepr};
use std::net::Ipv6Addr;

const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);

fuzz_target!(|input: &[u8]| {
    let [selector, body @ ..] = input else {
        return;
    };
    let msg_type = 133 + selector % 4;
    let mut msg = vec![msg_type, 0, 0, 0];
    msg.extend_from_slice(&body[..body.len().min(2000)]);
    let mut bytes = vec![0u8; ipv6::HEADER_LEN];
    let repr = Ipv6Repr {
        src: SRC,
        dst: ndisc::ALL_ROUTERS,
        next_header: next_header::ICMPV6,
        hop_limit: ndisc::HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
        payload_len: msg.len(),
    };
    ipv6::write_header(&mut bytes, &repr).unwrap();
    bytes.extend_from_slice(&msg);
    Icmpv6Packet::new_unchecked(&mut bytes[ipv6::HEADER_LEN..]).fill_checksum(SRC, ndisc::ALL_ROUTERS);
    let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let Ok(nd) = NdPacket::parse(&ip) else {
        return;
    };
    let options: Vec<NdOption> = nd.options().collect();
    assert!(options.len() * 8 <= msg.len());
    let mut out = vec![0u8; 4096];
    let len = ndisc::build(
        &mut out,
        &NdRepr {
            src: nd.src,
            dst: nd.dst,
            message: nd.message,
            options: &options,
        },
    )
    .expect("a parsed message builds");
    let again = Ipv6Packet::new_checked(&out[..len]).unwrap();
    let again = NdPacket::parse(&again).expect("a built message parses");
    assert_eq!(again.message, nd.message);
    assert_eq!(again.options().collect::<Vec<_>>(), options);
});
